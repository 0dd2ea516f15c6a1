//! Filter expressions: Milvus's boolean expressions over a collection's scalar
//! fields, as searches, queries and counts take them.
//!
//! ```text
//! age >= 18 and (city == "Oslo" or city in ["Bergen", 'Tromsø'])
//! not (id in [1, 2, 3]) && score < 0.5
//! 10 < age <= 20          name like "ab%"          flag          !flag
//! doc["size"]["h"] > 2    doc["tags"][0] == "new"  $meta["color"] in ["red"]
//! ```
//!
//! Comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`) put a field on one side and a
//! value on the other, or a field between two values (`1 < x < 5`). `in` and
//! `not in` take a list of values; `like` takes a VARCHAR pattern where `%`
//! matches any run of characters and `_` one character (`\%`, `\_` match
//! themselves). `and`/`&&`, `or`/`||` and `not`/`!` combine them (keywords in
//! any case), a BOOL field stands alone as a condition, and parentheses group.
//! `not` binds tightest, then `and`, then `or`.
//!
//! A JSON field is compared through a path into each row's value: `["key"]`
//! steps into an object, `[0]` into an array, as in `doc["a"]["b"]` or
//! `doc["list"][0]`. The collection's dynamic field is `$meta`, and a name that
//! is not a field names one of its keys: `color == "red"` means
//! `$meta["color"] == "red"`. A path takes every operator above, with values of
//! any type (an `in` list may mix them), and stands alone as a condition where
//! its value is `true`. A row matches only where the path leads to a value of
//! the compared value's type (for a list, of a type in it): a missing key, an
//! index past the end or a value of another type matches nothing, `!=` and
//! `not in` included (`not (...)` of a whole condition keeps those rows).
//! Numbers compare exactly by value, whether the JSON wrote them as integers or
//! not; strings compare by bytes; booleans only by `==` and `!=`.
//!
//! [`Filter::parse`] checks the expression against the schema: an unknown field,
//! a vector field, a value of the wrong type or a malformed expression is refused
//! with a [`FilterError`] naming it and where it is. Numbers compare by value
//! across integer and floating types; a FLOAT field compares at its own (32-bit)
//! precision. [`Filter::select`] evaluates a filter over a whole block of rows,
//! a column at a time (a path parses each row's JSON once per comparison).

use std::cmp::Ordering;
use std::collections::HashSet;

use milvus_like_api::schema::{CollectionSchema, DYNAMIC_FIELD_NAME, FieldType};

use crate::columns::{Column, RowBatch};
use crate::keys::Keys;

/// Longest filter accepted, in bytes (a query by a few tens of thousands of
/// keys fits).
pub const MAX_FILTER_BYTES: usize = 1 << 20;
/// Deepest nesting of parentheses and `not`.
const MAX_DEPTH: usize = 64;

/// Why a filter was refused: what is wrong, and the byte offset where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at byte {at}: {message}")]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    /// The operator with its sides swapped: `5 < x` is `x > 5`.
    fn flipped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            same => same,
        }
    }

    fn holds(self, ordering: Option<std::cmp::Ordering>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match (self, ordering) {
            (Self::Ne, None) => true,
            (_, None) => false,
            (Self::Eq, Some(o)) => o == Equal,
            (Self::Ne, Some(o)) => o != Equal,
            (Self::Lt, Some(o)) => o == Less,
            (Self::Le, Some(o)) => o != Greater,
            (Self::Gt, Some(o)) => o == Greater,
            (Self::Ge, Some(o)) => o != Less,
        }
    }
}

/// A value of a filter, converted to its field's kind.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    /// For INT8..INT64 fields.
    Int(i64),
    /// For FLOAT and DOUBLE fields, and integer fields compared with a
    /// fractional number.
    Float(f64),
    Str(String),
}

/// The values of an `in` list, for fast membership tests.
#[derive(Debug, Clone, PartialEq)]
enum ValueSet {
    Bools {
        f: bool,
        t: bool,
    },
    Ints(HashSet<i64>),
    /// Sorted, no -0.0.
    Floats(Vec<f64>),
    Strs(HashSet<String>),
}

/// A number of a JSON value or of a filter compared with one, exact.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    /// Any JSON integer (i64 or u64).
    Int(i128),
    /// Finite.
    Float(f64),
}

/// 2^127: floats at least this large are beyond every [`Num::Int`].
const I128_LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

impl Num {
    fn of_json(n: &serde_json::Number) -> Option<Self> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .map(Self::Int)
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(Self::Float))
    }

    /// The number as a whole one, or the float it is when it has a fraction
    /// (or is beyond i128).
    fn whole(self) -> Result<i128, f64> {
        match self {
            Self::Int(i) => Ok(i),
            #[allow(clippy::cast_possible_truncation)]
            Self::Float(f) if f.fract() == 0.0 && (-I128_LIMIT..I128_LIMIT).contains(&f) => {
                Ok(f as i128)
            }
            Self::Float(f) => Err(f),
        }
    }

    /// Exact comparison by value, without rounding either side.
    fn cmp(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            (Self::Float(a), Self::Float(b)) => a.partial_cmp(&b),
            (Self::Int(i), Self::Float(f)) => int_cmp_float(i, f),
            (Self::Float(f), Self::Int(i)) => int_cmp_float(i, f).map(Ordering::reverse),
        }
    }
}

/// `i` against `f`, exactly.
fn int_cmp_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= I128_LIMIT {
        return Some(Ordering::Less);
    }
    if f < -I128_LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // Exact: `whole` is a whole number within i128's range.
    #[allow(clippy::cast_possible_truncation)]
    let w = whole as i128;
    // Equal whole parts: `f`'s fraction decides.
    Some(i.cmp(&w).then(whole.total_cmp(&f)))
}

/// A value a JSON path is compared with.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool(bool),
    Num(Num),
    Str(String),
}

impl Scalar {
    fn of(literal: Literal) -> Self {
        match literal {
            Literal::Bool(b) => Self::Bool(b),
            Literal::Int(i) => Self::Num(Num::Int(i128::from(i))),
            Literal::Float(f) => Self::Num(Num::Float(f)),
            Literal::Str(s) => Self::Str(s),
        }
    }

    /// `value` against this, where both are of one type.
    fn cmp_json(&self, value: &serde_json::Value) -> Option<Ordering> {
        use serde_json::Value as J;
        match (value, self) {
            (J::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            (J::Number(a), Self::Num(b)) => Num::of_json(a)?.cmp(*b),
            (J::String(a), Self::Str(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        }
    }
}

/// The values of an `in` list over a JSON path, by type.
#[derive(Debug, Clone, PartialEq, Default)]
struct JsonSet {
    /// Whether `false` and whether `true` are in, if a boolean is.
    bools: Option<(bool, bool)>,
    /// Whole numbers, however written.
    wholes: HashSet<i128>,
    /// The other numbers: sorted, no -0.0.
    fractions: Vec<f64>,
    strs: HashSet<String>,
}

impl JsonSet {
    fn new(values: Vec<Scalar>) -> Self {
        let mut set = Self::default();
        for v in values {
            match v {
                Scalar::Bool(b) => {
                    let (f, t) = set.bools.get_or_insert((false, false));
                    *if b { t } else { f } = true;
                }
                Scalar::Num(n) => match n.whole() {
                    Ok(i) => {
                        set.wholes.insert(i);
                    }
                    Err(f) => set.fractions.push(f + 0.0),
                },
                Scalar::Str(s) => {
                    set.strs.insert(s);
                }
            }
        }
        set.fractions.sort_by(f64::total_cmp);
        set.fractions.dedup();
        set
    }

    /// Whether `value` is in the set, or `None` if the set holds nothing of
    /// its type.
    fn contains(&self, value: &serde_json::Value) -> Option<bool> {
        use serde_json::Value as J;
        match value {
            J::Bool(b) => self.bools.map(|(f, t)| if *b { t } else { f }),
            J::Number(n) if !self.wholes.is_empty() || !self.fractions.is_empty() => {
                Some(match Num::of_json(n)?.whole() {
                    Ok(i) => self.wholes.contains(&i),
                    Err(f) => self
                        .fractions
                        .binary_search_by(|p| p.total_cmp(&(f + 0.0)))
                        .is_ok(),
                })
            }
            J::String(s) if !self.strs.is_empty() => Some(self.strs.contains(s)),
            _ => None,
        }
    }
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq)]
enum PathStep {
    /// `["key"]`: a member of an object.
    Key(String),
    /// `[0]`: an element of an array.
    Index(u64),
}

/// The value at `path` in `value`, if there is one.
fn walk<'v>(mut value: &'v serde_json::Value, path: &[PathStep]) -> Option<&'v serde_json::Value> {
    for step in path {
        value = match step {
            PathStep::Key(key) => value.as_object()?.get(key)?,
            PathStep::Index(i) => value.as_array()?.get(usize::try_from(*i).ok()?)?,
        };
    }
    Some(value)
}

/// What a JSON path's value is tested for; each holds only where the value
/// is there and of a type the test names.
#[derive(Debug, Clone, PartialEq)]
enum JsonTest {
    /// Compared with a value of its type (booleans only by `==` and `!=`).
    Compare(CmpOp, Scalar),
    In(JsonSet),
    /// Of a type in the set and not in it.
    NotIn(JsonSet),
    /// A string matching a `like` pattern.
    Like(Vec<PatternPart>),
}

impl JsonTest {
    fn holds(&self, value: &serde_json::Value) -> bool {
        match self {
            Self::Compare(op, scalar) => scalar.cmp_json(value).is_some_and(|o| op.holds(Some(o))),
            Self::In(set) => set.contains(value) == Some(true),
            Self::NotIn(set) => set.contains(value) == Some(false),
            Self::Like(pattern) => value.as_str().is_some_and(|s| like(s, pattern)),
        }
    }
}

/// A checked filter: fields resolved to their columns, values to their types.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(bool),
    Compare {
        column: usize,
        op: CmpOp,
        value: Value,
    },
    In {
        column: usize,
        values: ValueSet,
    },
    Like {
        column: usize,
        pattern: Vec<PatternPart>,
    },
    /// A test of the value at `path` in each row of a JSON column.
    Json {
        column: usize,
        path: Vec<PathStep>,
        test: JsonTest,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum PatternPart {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// A filter checked against a collection's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `text` against `schema`.
    pub fn parse(text: &str, schema: &CollectionSchema) -> Result<Self, FilterError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                at: MAX_FILTER_BYTES,
                message: format!(
                    "the filter is {} bytes long; at most {MAX_FILTER_BYTES} are accepted",
                    text.len()
                ),
            });
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.len(),
            schema,
            depth: 0,
        };
        let expr = parser.or()?;
        if let Some(t) = parser.peek() {
            return Err(FilterError {
                at: t.at,
                message: format!(
                    "unexpected {} after a complete condition; join conditions with `and` or `or`",
                    t.kind.describe()
                ),
            });
        }
        Ok(Self { expr })
    }

    /// Parses `text` if it holds anything but blanks.
    pub fn parse_optional(
        text: &str,
        schema: &CollectionSchema,
    ) -> Result<Option<Self>, FilterError> {
        if text.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(text, schema).map(Some)
        }
    }

    /// The primary keys the filter names when it is nothing but a list of
    /// them (`pk in [..]`, `pk == v`), sorted: a delete needs no query for
    /// them. `None` for any other filter.
    pub fn key_list(&self, schema: &CollectionSchema) -> Option<Keys> {
        let pk = schema.primary_key_index();
        match &self.expr {
            Expr::In { column, values } if *column == pk => match values {
                ValueSet::Ints(keys) => {
                    let mut keys: Vec<i64> = keys.iter().copied().collect();
                    keys.sort_unstable();
                    Some(Keys::Int(keys))
                }
                ValueSet::Strs(keys) => {
                    let mut keys: Vec<String> = keys.iter().cloned().collect();
                    keys.sort_unstable();
                    Some(Keys::Str(keys))
                }
                _ => None,
            },
            Expr::Compare {
                column,
                op: CmpOp::Eq,
                value,
            } if *column == pk => match value {
                Value::Int(k) => Some(Keys::Int(vec![*k])),
                Value::Str(k) => Some(Keys::Str(vec![k.clone()])),
                _ => None,
            },
            _ => None,
        }
    }

    /// For every row of `batch` (of the schema it was parsed against), whether
    /// the filter keeps it.
    pub fn select(&self, batch: &RowBatch) -> Vec<bool> {
        eval(&self.expr, batch)
    }
}

/// The schema positions of the fields `names` asks for, in that order without
/// repeats; `*` stands for every field. An unknown name is refused naming it.
pub fn output_columns(schema: &CollectionSchema, names: &[String]) -> Result<Vec<usize>, String> {
    let mut columns = Vec::new();
    for name in names {
        let found: Vec<usize> = if name == "*" {
            (0..schema.fields().len()).collect()
        } else {
            let position = schema.fields().iter().position(|f| f.name == *name);
            vec![position.ok_or_else(|| {
                format!(
                    "output field {name:?} is not in collection {:?} (its fields: {})",
                    schema.name,
                    schema.field_list()
                )
            })?]
        };
        for c in found {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
    }
    Ok(columns)
}

fn eval(expr: &Expr, batch: &RowBatch) -> Vec<bool> {
    let n = batch.num_rows;
    match expr {
        Expr::Const(b) => vec![*b; n],
        Expr::Compare { column, op, value } => match batch.columns.get(*column) {
            Some(c) => compare(c, *op, value, n),
            None => vec![false; n],
        },
        Expr::In { column, values } => match batch.columns.get(*column) {
            Some(c) => member(c, values, n),
            None => vec![false; n],
        },
        Expr::Like { column, pattern } => match batch.columns.get(*column) {
            Some(Column::Str(v)) => v.iter().map(|s| like(s, pattern)).collect(),
            _ => vec![false; n],
        },
        Expr::Json { column, path, test } => match batch.columns.get(*column) {
            Some(Column::Str(v)) => v
                .iter()
                .map(|text| {
                    serde_json::from_str::<serde_json::Value>(text)
                        .is_ok_and(|doc| walk(&doc, path).is_some_and(|value| test.holds(value)))
                })
                .collect(),
            _ => vec![false; n],
        },
        Expr::And(a, b) => {
            let mut left = eval(a, batch);
            let right = eval(b, batch);
            left.iter_mut().zip(right).for_each(|(l, r)| *l &= r);
            left
        }
        Expr::Or(a, b) => {
            let mut left = eval(a, batch);
            let right = eval(b, batch);
            left.iter_mut().zip(right).for_each(|(l, r)| *l |= r);
            left
        }
        Expr::Not(a) => eval(a, batch).into_iter().map(|b| !b).collect(),
    }
}

fn compare(column: &Column, op: CmpOp, value: &Value, n: usize) -> Vec<bool> {
    fn by<T: PartialOrd>(values: impl Iterator<Item = T>, op: CmpOp, v: &T) -> Vec<bool> {
        values.map(|x| op.holds(x.partial_cmp(v))).collect()
    }
    match (column, value) {
        (Column::Bool(v), Value::Bool(b)) => by(v.iter(), op, &b),
        (Column::Int(v), Value::Int(i)) => by(v.iter().map(|x| i64::from(*x)), op, i),
        (Column::Long(v), Value::Int(i)) => by(v.iter(), op, &i),
        (Column::Int(v), Value::Float(f)) => by(v.iter().map(|x| f64::from(*x)), op, f),
        #[allow(clippy::cast_precision_loss)]
        (Column::Long(v), Value::Float(f)) => by(v.iter().map(|x| *x as f64), op, f),
        (Column::Float(v), Value::Float(f)) => by(v.iter().map(|x| f64::from(*x)), op, f),
        (Column::Double(v), Value::Float(f)) => by(v.iter(), op, &f),
        (Column::Str(v), Value::Str(s)) => by(v.iter().map(String::as_str), op, &s.as_str()),
        _ => vec![false; n],
    }
}

fn member(column: &Column, values: &ValueSet, n: usize) -> Vec<bool> {
    let in_floats = |set: &[f64], x: f64| set.binary_search_by(|p| p.total_cmp(&(x + 0.0))).is_ok();
    match (column, values) {
        (Column::Bool(v), ValueSet::Bools { f, t }) => {
            v.iter().map(|b| if *b { *t } else { *f }).collect()
        }
        (Column::Int(v), ValueSet::Ints(set)) => {
            v.iter().map(|x| set.contains(&i64::from(*x))).collect()
        }
        (Column::Long(v), ValueSet::Ints(set)) => v.iter().map(|x| set.contains(x)).collect(),
        (Column::Float(v), ValueSet::Floats(set)) => {
            v.iter().map(|x| in_floats(set, f64::from(*x))).collect()
        }
        (Column::Double(v), ValueSet::Floats(set)) => {
            v.iter().map(|x| in_floats(set, *x)).collect()
        }
        (Column::Str(v), ValueSet::Strs(set)) => v.iter().map(|s| set.contains(s)).collect(),
        _ => vec![false; n],
    }
}

/// Whether `text` matches a `like` pattern (`%` any run, `_` one character).
fn like(text: &str, pattern: &[PatternPart]) -> bool {
    let text: Vec<char> = text.chars().collect();
    // Greedy with one backtrack point: the last `%` seen and where it resumed.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatternPart::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(PatternPart::One) => {
                t += 1;
                p += 1;
            }
            Some(PatternPart::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|part| *part == PatternPart::Any)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    /// A magnitude: the sign is a separate `-`.
    Int(u64),
    Float(f64),
    Str(String),
    True,
    False,
    And,
    Or,
    Not,
    In,
    Like,
    Cmp(CmpOp),
    Minus,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Self::Ident(s) => format!("name {s:?}"),
            Self::Int(i) => format!("number {i}"),
            Self::Float(f) => format!("number {f}"),
            Self::Str(s) => format!("string {s:?}"),
            Self::True => "`true`".into(),
            Self::False => "`false`".into(),
            Self::And => "`and`".into(),
            Self::Or => "`or`".into(),
            Self::Not => "`not`".into(),
            Self::In => "`in`".into(),
            Self::Like => "`like`".into(),
            Self::Cmp(op) => format!("`{}`", op.text()),
            Self::Minus => "`-`".into(),
            Self::LParen => "`(`".into(),
            Self::RParen => "`)`".into(),
            Self::LBracket => "`[`".into(),
            Self::RBracket => "`]`".into(),
            Self::Comma => "`,`".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    at: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let error = |at, message: String| FilterError { at, message };
    while i < bytes.len() {
        let c = bytes[i];
        let at = i;
        let two = bytes.get(i..i + 2);
        let simple = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Some((Kind::LParen, 1)),
            b')' => Some((Kind::RParen, 1)),
            b'[' => Some((Kind::LBracket, 1)),
            b']' => Some((Kind::RBracket, 1)),
            b',' => Some((Kind::Comma, 1)),
            b'-' => Some((Kind::Minus, 1)),
            _ => match two {
                Some(b"==") => Some((Kind::Cmp(CmpOp::Eq), 2)),
                Some(b"!=") => Some((Kind::Cmp(CmpOp::Ne), 2)),
                Some(b"<=") => Some((Kind::Cmp(CmpOp::Le), 2)),
                Some(b">=") => Some((Kind::Cmp(CmpOp::Ge), 2)),
                Some(b"&&") => Some((Kind::And, 2)),
                Some(b"||") => Some((Kind::Or, 2)),
                _ => match c {
                    b'<' => Some((Kind::Cmp(CmpOp::Lt), 1)),
                    b'>' => Some((Kind::Cmp(CmpOp::Gt), 1)),
                    b'!' => Some((Kind::Not, 1)),
                    b'=' => {
                        return Err(error(
                            at,
                            "`=` is not an operator; compare with `==`".into(),
                        ));
                    }
                    _ => None,
                },
            },
        };
        if let Some((kind, len)) = simple {
            tokens.push(Token { kind, at });
            i += len;
            continue;
        }
        let kind = if c == b'"' || c == b'\'' {
            let (s, len) = string(&text[i..]).ok_or_else(|| {
                error(
                    at,
                    format!("the string starting here has no closing {}", c as char),
                )
            })?;
            i += len;
            Kind::Str(s)
        } else if c.is_ascii_digit() || c == b'.' {
            let len = bytes[i..]
                .iter()
                .enumerate()
                .take_while(|(j, b)| {
                    b.is_ascii_alphanumeric()
                        || **b == b'.'
                        || ((**b == b'-' || **b == b'+')
                            && *j > 0
                            && matches!(bytes[i + j - 1], b'e' | b'E'))
                })
                .count();
            let word = &text[i..i + len];
            i += len;
            number(word).map_err(|m| error(at, m))?
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            // `$` starts one name, the dynamic field's.
            let len = 1 + bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            let word = &text[i..i + len];
            i += len;
            if c == b'$' && word != DYNAMIC_FIELD_NAME {
                return Err(error(
                    at,
                    format!(
                        "unexpected name {word:?}; only `{DYNAMIC_FIELD_NAME}` (the dynamic field) starts with `$`"
                    ),
                ));
            }
            match word.to_ascii_lowercase().as_str() {
                "and" => Kind::And,
                "or" => Kind::Or,
                "not" => Kind::Not,
                "in" => Kind::In,
                "like" => Kind::Like,
                "true" => Kind::True,
                "false" => Kind::False,
                _ => Kind::Ident(word.to_owned()),
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(error(at, format!("unexpected character {ch:?}")));
        };
        tokens.push(Token { kind, at });
    }
    Ok(tokens)
}

/// A quoted string at the start of `text`, unescaped, and its length in bytes.
fn string(text: &str) -> Option<(String, usize)> {
    let mut chars = text.char_indices();
    let (_, quote) = chars.next()?;
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                // `\%`, `\_` and `\\` stay escaped, so that `like` can tell a
                // literal `%` or `_` from a wildcard (see [`unescape`]).
                let (_, e) = chars.next()?;
                match e {
                    '%' | '_' | '\\' => {
                        out.push('\\');
                        out.push(e);
                    }
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    other => out.push(other),
                }
            }
            c if c == quote => return Some((out, i + c.len_utf8())),
            c => out.push(c),
        }
    }
    None
}

fn number(word: &str) -> Result<Kind, String> {
    if word.contains(['.', 'e', 'E']) {
        match word.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Kind::Float(f)),
            _ => Err(format!("{word:?} is not a number")),
        }
    } else {
        word.parse::<u64>()
            .map(Kind::Int)
            .map_err(|e| match e.kind() {
                std::num::IntErrorKind::PosOverflow => {
                    format!("{word} does not fit a 64-bit integer")
                }
                _ => format!("{word:?} is not a number"),
            })
    }
}

/// A value as written, before it meets its field.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Literal {
    fn describe(&self) -> String {
        match self {
            Self::Bool(b) => format!("the boolean {b}"),
            Self::Int(i) => format!("the number {i}"),
            Self::Float(f) => format!("the number {f}"),
            Self::Str(s) => format!("the string {s:?}"),
        }
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    next: usize,
    /// Byte length of the text, for errors at its end.
    end: usize,
    schema: &'a CollectionSchema,
    depth: usize,
}

/// A field named in a filter, resolved, with the path into it if it is JSON.
#[derive(Debug, Clone)]
struct FieldRef<'a> {
    column: usize,
    name: &'a str,
    ty: FieldType,
    at: usize,
    /// Never empty for a JSON field, empty for the others.
    path: Vec<PathStep>,
}

impl FieldRef<'_> {
    /// The field, or the path into it, as errors name it: `field "age"`,
    /// `doc["a"][0]`.
    fn describe(&self) -> String {
        if self.path.is_empty() {
            return format!("field {:?}", self.name);
        }
        let mut out = self.name.to_owned();
        for step in &self.path {
            match step {
                PathStep::Key(key) => out.push_str(&format!("[{key:?}]")),
                PathStep::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn peek_kind(&self) -> Option<&Kind> {
        self.peek().map(|t| &t.kind)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.next).cloned();
        self.next += 1;
        t
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn error<T>(&self, at: usize, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            at,
            message: message.into(),
        })
    }

    /// An error for what stands at the cursor, which should have been `wanted`.
    fn expected<T>(&self, wanted: &str) -> Result<T, FilterError> {
        match self.peek() {
            Some(t) => self.error(
                t.at,
                format!("expected {wanted}, found {}", t.kind.describe()),
            ),
            None => self.error(self.end, format!("expected {wanted}, found the end")),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek_kind() == Some(&Kind::Or) {
            self.bump();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.peek_kind() == Some(&Kind::And) {
            self.bump();
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        if self.depth >= MAX_DEPTH {
            return self.error(
                self.here(),
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            );
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek_kind() {
            Some(Kind::Not) => {
                self.bump();
                let inner = self.nested(Self::unary)?;
                Ok(Expr::Not(Box::new(inner)))
            }
            Some(Kind::LParen) => {
                self.bump();
                let inner = self.nested(Self::or)?;
                if self.peek_kind() != Some(&Kind::RParen) {
                    return self.expected("`)`");
                }
                self.bump();
                Ok(inner)
            }
            Some(Kind::Ident(_)) => self.condition_on_field(),
            Some(Kind::True | Kind::False) if !self.followed_by_cmp() => {
                let t = self.bump();
                Ok(Expr::Const(t.is_some_and(|t| t.kind == Kind::True)))
            }
            Some(
                Kind::Int(_)
                | Kind::Float(_)
                | Kind::Str(_)
                | Kind::Minus
                | Kind::True
                | Kind::False,
            ) => self.condition_on_value(),
            _ => self.expected("a condition"),
        }
    }

    /// Whether the token after the cursor is a comparison.
    fn followed_by_cmp(&self) -> bool {
        matches!(
            self.tokens.get(self.next + 1).map(|t| &t.kind),
            Some(Kind::Cmp(_))
        )
    }

    fn field(&mut self) -> Result<FieldRef<'a>, FilterError> {
        let Some(Token {
            kind: Kind::Ident(name),
            at,
        }) = self.peek().cloned()
        else {
            return self.expected("a field name");
        };
        self.bump();
        let schema = self.schema;
        let named = schema
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name);
        // A name that is no field is a key of the dynamic field, if there is one.
        let (column, field, mut path) = match (named, schema.dynamic_field()) {
            (Some((column, field)), _) => (column, field, Vec::new()),
            (None, Some((column, field))) => (column, field, vec![PathStep::Key(name)]),
            (None, None) => {
                return self.error(
                    at,
                    format!(
                        "unknown field {name:?}; collection {:?} has fields {}",
                        schema.name,
                        schema.field_list()
                    ),
                );
            }
        };
        if let Some(Token {
            kind: Kind::LBracket,
            at: bracket,
        }) = self.peek()
        {
            if field.ty != FieldType::Json {
                return self.error(
                    *bracket,
                    format!(
                        "field {:?} is {}; only a JSON field takes a path like `[\"key\"]` or `[0]`",
                        field.name,
                        field.ty.name()
                    ),
                );
            }
            self.path(&mut path)?;
        }
        if field.ty == FieldType::Json && path.is_empty() {
            return self.error(
                at,
                format!(
                    "field {:?} is JSON; a filter compares a value inside it, as `{}[\"key\"]`",
                    field.name, field.name
                ),
            );
        }
        if let FieldType::FloatVector { .. } = field.ty {
            return self.error(
                at,
                format!(
                    "field {:?} is FLOAT_VECTOR; a filter compares scalar fields (search finds near vectors)",
                    field.name
                ),
            );
        }
        Ok(FieldRef {
            column,
            name: &field.name,
            ty: field.ty,
            at,
            path,
        })
    }

    /// The steps of a path into a JSON field, `["key"]` or `[0]` each, onto
    /// `path`.
    fn path(&mut self, path: &mut Vec<PathStep>) -> Result<(), FilterError> {
        while self.peek_kind() == Some(&Kind::LBracket) {
            self.bump();
            let Some(Token { kind, at }) = self.peek().cloned() else {
                return self.expected("a quoted key or an array index after `[`");
            };
            path.push(match kind {
                Kind::Str(key) => PathStep::Key(unescape_str(key)),
                Kind::Int(i) => PathStep::Index(i),
                Kind::Float(f) => {
                    return self.error(
                        at,
                        format!("an array index is a whole number from 0, not {f:?}"),
                    );
                }
                Kind::Minus => {
                    return self.error(at, "an array index is a whole number from 0, not negative");
                }
                _ => return self.expected("a quoted key or an array index after `[`"),
            });
            self.bump();
            if self.peek_kind() != Some(&Kind::RBracket) {
                return self.expected("`]` closing the path step");
            }
            self.bump();
        }
        Ok(())
    }

    fn literal(&mut self) -> Result<(Literal, usize), FilterError> {
        let at = self.here();
        let negative = self.peek_kind() == Some(&Kind::Minus);
        if negative {
            self.bump();
        }
        let Some(t) = self.peek().cloned() else {
            return self.expected("a value");
        };
        let literal = match (t.kind, negative) {
            (Kind::Int(i), negative) => {
                let signed = if negative {
                    0i64.checked_sub_unsigned(i)
                } else {
                    i64::try_from(i).ok()
                };
                Literal::Int(signed.ok_or_else(|| FilterError {
                    at,
                    message: format!(
                        "{}{i} does not fit a 64-bit integer",
                        if negative { "-" } else { "" }
                    ),
                })?)
            }
            (Kind::Float(f), false) => Literal::Float(f),
            (Kind::Float(f), true) => Literal::Float(-f),
            (Kind::Str(s), false) => Literal::Str(s),
            (Kind::True, false) => Literal::Bool(true),
            (Kind::False, false) => Literal::Bool(false),
            (Kind::Ident(name), false) => {
                return self.error(
                    t.at,
                    format!(
                        "expected a value, found field {name:?}; a filter compares a field with values, not with another field"
                    ),
                );
            }
            _ if negative => return self.expected("a number after `-`"),
            _ => return self.expected("a value"),
        };
        self.bump();
        Ok((literal, at))
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        match self.peek_kind() {
            Some(Kind::Cmp(op)) => {
                let op = *op;
                self.bump();
                Some(op)
            }
            _ => None,
        }
    }

    /// `field op value`, `field [not] in [...]`, `field like "..."`, or a BOOL
    /// field alone.
    fn condition_on_field(&mut self) -> Result<Expr, FilterError> {
        let field = self.field()?;
        if let Some(op) = self.cmp_op() {
            let (literal, at) = self.literal()?;
            return compare_expr(&field, op, literal, at);
        }
        match self.peek_kind() {
            Some(Kind::In) => {
                self.bump();
                self.in_list(&field, false)
            }
            Some(Kind::Not)
                if self.tokens.get(self.next + 1).map(|t| &t.kind) == Some(&Kind::In) =>
            {
                self.bump();
                self.bump();
                self.in_list(&field, true)
            }
            Some(Kind::Like) => {
                self.bump();
                let (literal, at) = self.literal()?;
                like_expr(&field, literal, at)
            }
            // A path alone holds where its value is `true`, as a BOOL field.
            _ if field.ty == FieldType::Json => Ok(Expr::Json {
                column: field.column,
                path: field.path,
                test: JsonTest::Compare(CmpOp::Eq, Scalar::Bool(true)),
            }),
            _ if field.ty == FieldType::Bool => Ok(Expr::Compare {
                column: field.column,
                op: CmpOp::Eq,
                value: Value::Bool(true),
            }),
            _ => self.expected(&format!(
                "a comparison, `in` or `like` after field {:?}",
                field.name
            )),
        }
    }

    /// `value op field` or `value op field op value`.
    fn condition_on_value(&mut self) -> Result<Expr, FilterError> {
        let (low, low_at) = self.literal()?;
        let Some(op) = self.cmp_op() else {
            return self.expected("a comparison after a value");
        };
        let field = self.field()?;
        let first = compare_expr(&field, op.flipped(), low, low_at)?;
        let Some(second_op) = self.cmp_op() else {
            return Ok(first);
        };
        let ascending = |o: CmpOp| matches!(o, CmpOp::Lt | CmpOp::Le);
        let descending = |o: CmpOp| matches!(o, CmpOp::Gt | CmpOp::Ge);
        if !(ascending(op) && ascending(second_op) || descending(op) && descending(second_op)) {
            return self.error(
                field.at,
                format!(
                    "a range around {} takes `<`/`<=` on both sides or `>`/`>=` on both sides, not `{}` and `{}`",
                    field.describe(),
                    op.text(),
                    second_op.text()
                ),
            );
        }
        let (high, high_at) = self.literal()?;
        let second = compare_expr(&field, second_op, high, high_at)?;
        Ok(Expr::And(Box::new(first), Box::new(second)))
    }

    /// The list after `in`, or after `not in` if `negated`.
    fn in_list(&mut self, field: &FieldRef<'_>, negated: bool) -> Result<Expr, FilterError> {
        if self.peek_kind() != Some(&Kind::LBracket) {
            return self.expected("`[` starting a list of values");
        }
        self.bump();
        let mut literals = Vec::new();
        if self.peek_kind() == Some(&Kind::RBracket) {
            self.bump();
        } else {
            loop {
                literals.push(self.literal()?);
                match self.peek_kind() {
                    Some(Kind::Comma) => {
                        self.bump();
                        // A trailing comma is fine.
                        if self.peek_kind() == Some(&Kind::RBracket) {
                            self.bump();
                            break;
                        }
                    }
                    Some(Kind::RBracket) => {
                        self.bump();
                        break;
                    }
                    _ => return self.expected("`,` or `]`"),
                }
            }
        }
        in_expr(field, literals, negated)
    }
}

fn type_error<T>(field: &FieldRef<'_>, literal: &Literal, at: usize) -> Result<T, FilterError> {
    Err(FilterError {
        at,
        message: format!(
            "field {:?} is {}; it cannot be compared with {}",
            field.name,
            field.ty.name(),
            literal.describe()
        ),
    })
}

/// The literal as a value of the field's kind.
fn value_for(field: &FieldRef<'_>, literal: Literal, at: usize) -> Result<Value, FilterError> {
    const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53
    match (field.ty, literal) {
        (FieldType::Bool, Literal::Bool(b)) => Ok(Value::Bool(b)),
        (FieldType::Int8 | FieldType::Int16 | FieldType::Int32 | FieldType::Int64, l) => match l {
            Literal::Int(i) => Ok(Value::Int(i)),
            #[allow(clippy::cast_possible_truncation)]
            Literal::Float(f) if f.fract() == 0.0 && f.abs() <= EXACT_INT => {
                Ok(Value::Int(f as i64))
            }
            Literal::Float(f) => Ok(Value::Float(f)),
            other => type_error(field, &other, at),
        },
        (FieldType::Float, l) => match l {
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            Literal::Int(i) => Ok(Value::Float(f64::from(i as f32))),
            #[allow(clippy::cast_possible_truncation)]
            Literal::Float(f) => Ok(Value::Float(f64::from(f as f32))),
            other => type_error(field, &other, at),
        },
        (FieldType::Double, l) => match l {
            #[allow(clippy::cast_precision_loss)]
            Literal::Int(i) => Ok(Value::Float(i as f64)),
            Literal::Float(f) => Ok(Value::Float(f)),
            other => type_error(field, &other, at),
        },
        (FieldType::VarChar { .. }, Literal::Str(s)) => Ok(Value::Str(s)),
        (_, other) => type_error(field, &other, at),
    }
}

fn compare_expr(
    field: &FieldRef<'_>,
    op: CmpOp,
    literal: Literal,
    at: usize,
) -> Result<Expr, FilterError> {
    if field.ty == FieldType::Json {
        if let Literal::Bool(b) = literal
            && !matches!(op, CmpOp::Eq | CmpOp::Ne)
        {
            return Err(FilterError {
                at,
                message: format!(
                    "{} cannot be compared with `{}` to the boolean {b}; only `==` and `!=` compare booleans",
                    field.describe(),
                    op.text()
                ),
            });
        }
        return Ok(Expr::Json {
            column: field.column,
            path: field.path.clone(),
            test: JsonTest::Compare(op, Scalar::of(unescape(literal))),
        });
    }
    if field.ty == FieldType::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        return Err(FilterError {
            at: field.at,
            message: format!(
                "field {:?} is BOOL; only `==` and `!=` compare it, not `{}`",
                field.name,
                op.text()
            ),
        });
    }
    let value = value_for(field, unescape(literal), at)?;
    Ok(Expr::Compare {
        column: field.column,
        op,
        value,
    })
}

/// A string as the lexer keeps it (`\%`, `\_`, `\\` escaped), each escaped
/// character as itself: the value everywhere but in `like`.
fn unescape(literal: Literal) -> Literal {
    match literal {
        Literal::Str(s) => Literal::Str(unescape_str(s)),
        other => other,
    }
}

/// [`unescape`] for a string.
fn unescape_str(s: String) -> String {
    if !s.contains('\\') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// `field in [literals]`, or `field not in [literals]` if `negated`.
fn in_expr(
    field: &FieldRef<'_>,
    literals: Vec<(Literal, usize)>,
    negated: bool,
) -> Result<Expr, FilterError> {
    if field.ty == FieldType::Json {
        let set = JsonSet::new(
            literals
                .into_iter()
                .map(|(l, _)| Scalar::of(unescape(l)))
                .collect(),
        );
        return Ok(Expr::Json {
            column: field.column,
            path: field.path.clone(),
            test: if negated {
                JsonTest::NotIn(set)
            } else {
                JsonTest::In(set)
            },
        });
    }
    let values = literals
        .into_iter()
        .map(|(l, at)| value_for(field, unescape(l), at))
        .collect::<Result<Vec<_>, _>>()?;
    let set = match field.ty {
        FieldType::Bool => ValueSet::Bools {
            f: values.contains(&Value::Bool(false)),
            t: values.contains(&Value::Bool(true)),
        },
        FieldType::Int8 | FieldType::Int16 | FieldType::Int32 | FieldType::Int64 => {
            // A fractional number never equals an integer.
            ValueSet::Ints(
                values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect(),
            )
        }
        FieldType::Float | FieldType::Double => {
            let mut floats: Vec<f64> = values
                .iter()
                .filter_map(|v| match v {
                    Value::Float(f) => Some(f + 0.0),
                    _ => None,
                })
                .collect();
            floats.sort_by(f64::total_cmp);
            floats.dedup();
            ValueSet::Floats(floats)
        }
        FieldType::VarChar { .. } => ValueSet::Strs(
            values
                .into_iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        FieldType::FloatVector { .. } | FieldType::Json => ValueSet::Ints(HashSet::new()),
    };
    let expr = Expr::In {
        column: field.column,
        values: set,
    };
    Ok(if negated {
        Expr::Not(Box::new(expr))
    } else {
        expr
    })
}

fn like_expr(field: &FieldRef<'_>, literal: Literal, at: usize) -> Result<Expr, FilterError> {
    let (FieldType::VarChar { .. } | FieldType::Json) = field.ty else {
        return Err(FilterError {
            at: field.at,
            message: format!(
                "field {:?} is {}; `like` matches VARCHAR fields and JSON paths",
                field.name,
                field.ty.name()
            ),
        });
    };
    let Literal::Str(text) = literal else {
        return Err(FilterError {
            at,
            message: format!("`like` takes a quoted pattern, not {}", literal.describe()),
        });
    };
    let mut pattern = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        pattern.push(match c {
            '\\' => PatternPart::Char(chars.next().unwrap_or(c)),
            '%' => PatternPart::Any,
            '_' => PatternPart::One,
            c => PatternPart::Char(c),
        });
    }
    Ok(if field.ty == FieldType::Json {
        Expr::Json {
            column: field.column,
            path: field.path.clone(),
            test: JsonTest::Like(pattern),
        }
    } else {
        Expr::Like {
            column: field.column,
            pattern,
        }
    })
}

#[cfg(test)]
mod tests {
    use milvus_like_api::proto;
    use proptest::prelude::*;

    use super::*;

    /// A field of the test schemas: `id` is the key, `v` a 2-d vector,
    /// `name` a VARCHAR(64).
    fn field(name: &str, data_type: proto::DataType) -> proto::FieldSchema {
        proto::FieldSchema {
            name: name.into(),
            data_type: data_type.into(),
            is_primary_key: name == "id",
            dim: if name == "v" { 2 } else { 0 },
            max_length: if name == "name" { 64 } else { 0 },
            ..proto::FieldSchema::default()
        }
    }

    fn schema_of(name: &str, fields: Vec<proto::FieldSchema>) -> CollectionSchema {
        CollectionSchema::try_from(proto::CollectionSchema {
            name: name.into(),
            fields,
            ..proto::CollectionSchema::default()
        })
        .expect("schema")
    }

    #[test]
    fn a_list_of_primary_keys_is_known_without_reading_rows() {
        let people = schema();
        let keys = |text: &str| Filter::parse(text, &people).expect(text).key_list(&people);
        assert_eq!(keys("id in [3, 1, -2]"), Some(Keys::Int(vec![-2, 1, 3])));
        assert_eq!(keys("id == 7"), Some(Keys::Int(vec![7])));
        assert_eq!(keys("id in []"), Some(Keys::Int(vec![])));
        assert_eq!(keys("id > 3"), None);
        assert_eq!(keys("age in [1]"), None);
        assert_eq!(keys("id in [1] or id in [2]"), None);
        assert_eq!(keys("not id in [1]"), None);
        let docs = schema_of(
            "docs",
            vec![
                proto::FieldSchema {
                    max_length: 32,
                    ..field("id", proto::DataType::Varchar)
                },
                field("v", proto::DataType::FloatVector),
            ],
        );
        let keys = |text: &str| Filter::parse(text, &docs).expect(text).key_list(&docs);
        assert_eq!(
            keys(r#"id in ["b", 'a, "quoted"', "b"]"#),
            Some(Keys::Str(vec!["a, \"quoted\"".into(), "b".into()]))
        );
        assert_eq!(keys("id == 'x'"), Some(Keys::Str(vec!["x".into()])));
        assert_eq!(keys("id like 'x%'"), None);
    }

    fn schema() -> CollectionSchema {
        schema_of(
            "people",
            vec![
                field("id", proto::DataType::Int64),
                field("age", proto::DataType::Int8),
                field("score", proto::DataType::Float),
                field("weight", proto::DataType::Double),
                field("name", proto::DataType::Varchar),
                field("flag", proto::DataType::Bool),
                field("v", proto::DataType::FloatVector),
            ],
        )
    }

    /// One row per tuple.
    fn batch(rows: &[(i64, i32, f32, f64, &str, bool)]) -> RowBatch {
        RowBatch {
            columns: vec![
                Column::Long(rows.iter().map(|r| r.0).collect()),
                Column::Int(rows.iter().map(|r| r.1).collect()),
                Column::Float(rows.iter().map(|r| r.2).collect()),
                Column::Double(rows.iter().map(|r| r.3).collect()),
                Column::Str(rows.iter().map(|r| r.4.to_owned()).collect()),
                Column::Bool(rows.iter().map(|r| r.5).collect()),
                Column::Vector {
                    dim: 2,
                    values: vec![0.0; rows.len() * 2].into(),
                },
            ],
            num_rows: rows.len(),
        }
    }

    fn people() -> RowBatch {
        batch(&[
            (1, 17, 0.1, 60.5, "ada", true),
            (2, 18, 0.5, 70.0, "bob", false),
            (3, 30, 0.9, 80.25, "abba", true),
            (4, -5, 1.0, -1.0, "a_b%c", false),
            (5, 127, 0.25, 0.0, "", true),
        ])
    }

    /// The ids of the rows `filter` keeps.
    fn ids(filter: &str) -> Vec<i64> {
        let f = Filter::parse(filter, &schema()).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let rows = people();
        let Column::Long(ids) = &rows.columns[0] else {
            unreachable!()
        };
        f.select(&rows)
            .iter()
            .zip(ids)
            .filter(|(keep, _)| **keep)
            .map(|(_, id)| *id)
            .collect()
    }

    fn error(filter: &str) -> FilterError {
        Filter::parse(filter, &schema()).expect_err(filter)
    }

    #[test]
    fn comparisons_of_every_type() {
        assert_eq!(ids("age >= 18"), [2, 3, 5]);
        assert_eq!(ids("age > 17.5"), [2, 3, 5]);
        assert_eq!(ids("age == 18.0"), [2]);
        assert_eq!(ids("age < -4"), [4]);
        assert_eq!(ids("id != 3"), [1, 2, 4, 5]);
        assert_eq!(ids("score == 0.1"), [1], "a FLOAT compares at 32 bits");
        assert_eq!(ids("score <= 0.5"), [1, 2, 5]);
        assert_eq!(ids("weight > 70"), [3]);
        assert_eq!(ids("weight == -1"), [4]);
        assert_eq!(ids("name == \"bob\""), [2]);
        assert_eq!(ids("name < 'b'"), [1, 3, 4, 5]);
        assert_eq!(ids("flag"), [1, 3, 5]);
        assert_eq!(ids("flag == false"), [2, 4]);
        assert_eq!(ids("true"), [1, 2, 3, 4, 5]);
        assert_eq!(ids("18 <= age"), [2, 3, 5]);
        assert_eq!(ids("17 < age < 100"), [2, 3]);
        assert_eq!(ids("100 >= age >= 17"), [1, 2, 3]);
    }

    #[test]
    fn lists_patterns_and_logic() {
        assert_eq!(ids("id in [1, 3, 99]"), [1, 3]);
        assert_eq!(ids("id not in [1, 3]"), [2, 4, 5]);
        assert_eq!(ids("id in []"), Vec::<i64>::new());
        assert_eq!(ids("name in ['ada', \"\", ]"), [1, 5]);
        assert_eq!(ids("score in [0.25, 1]"), [4, 5]);
        assert_eq!(ids("age in [17.5, 30]"), [3]);
        assert_eq!(ids("flag in [false]"), [2, 4]);
        assert_eq!(ids("name like 'a%'"), [1, 3, 4]);
        assert_eq!(ids("name like '%b%'"), [2, 3, 4]);
        assert_eq!(ids("name like '_o_'"), [2]);
        assert_eq!(ids("name like 'a\\_b\\%c'"), [4]);
        assert_eq!(ids("name like 'a_b_c'"), [4]);
        assert_eq!(ids("name like '%'"), [1, 2, 3, 4, 5]);
        assert_eq!(
            ids("name == 'a\\_b\\%c'"),
            [4],
            "escapes are plain outside like"
        );
        assert_eq!(ids("age > 17 and flag"), [3, 5]);
        assert_eq!(ids("age > 17 && flag || id == 1"), [1, 3, 5]);
        assert_eq!(ids("id == 1 or id == 2 and flag"), [1], "and binds tighter");
        assert_eq!(ids("(id == 1 or id == 2) and not flag"), [2]);
        assert_eq!(ids("NOT (id in [1,2]) AND !flag"), [4]);
        assert_eq!(ids("not not flag"), [1, 3, 5]);
    }

    #[test]
    fn a_backslash_before_a_wildcard_is_itself() {
        let rows = batch(&[
            (1, 0, 0.0, 0.0, r"x\y%", false),
            (2, 0, 0.0, 0.0, r"x\yz", false),
        ]);
        let keeps = |f: &str| Filter::parse(f, &schema()).expect(f).select(&rows);
        assert_eq!(keeps(r"name like 'x\\y\%'"), [true, false]);
        assert_eq!(keeps(r"name like 'x\\y%'"), [true, true]);
        assert_eq!(
            keeps(r"name like 'x\\%'"),
            [true, true],
            "a backslash, then a wildcard"
        );
        assert_eq!(keeps(r"name == 'x\\yz'"), [false, true]);
        assert_eq!(keeps(r"name in ['x\\y%']"), [true, false]);
    }

    #[test]
    fn mistakes_name_the_problem_and_the_place() {
        let e = error("agee > 3");
        assert_eq!(e.at, 0);
        assert!(e.message.contains("unknown field \"agee\""), "{e}");
        assert!(e.message.contains("id, age, score"), "{e}");
        let e = error("age >");
        assert_eq!(e.at, 5);
        assert!(e.message.contains("expected a value, found the end"), "{e}");
        assert!(error("age = 3").message.contains("compare with `==`"));
        assert!(error("age > 'x'").message.contains("INT8"));
        assert!(error("name == 3").message.contains("VARCHAR"));
        assert!(error("flag > true").message.contains("only `==` and `!=`"));
        assert!(error("v == 1").message.contains("FLOAT_VECTOR"));
        assert!(error("age > id").message.contains("not with another field"));
        assert!(error("age like 'a%'").message.contains("VARCHAR fields"));
        assert!(error("(age > 3").message.contains("expected `)`"));
        assert!(error("age > 3 age < 5").message.contains("join conditions"));
        assert!(error("id in [1, 2").message.contains("`,` or `]`"));
        assert!(error("name == 'abc").message.contains("no closing"));
        assert!(
            error("id == 99999999999999999999")
                .message
                .contains("64-bit")
        );
        assert!(error("1 < age > 3").message.contains("range around field"));
        assert!(error("age # 3").message.contains("unexpected character"));
        assert!(error("").message.contains("expected a condition"));
        assert!(error(&"(".repeat(100)).message.contains("nests deeper"));
        assert!(error(&"not ".repeat(100)).message.contains("nests deeper"));
    }

    #[test]
    fn the_extremes_of_integers_parse() {
        assert_eq!(ids("id > -9223372036854775808"), [1, 2, 3, 4, 5]);
        assert_eq!(ids("id < 9223372036854775807"), [1, 2, 3, 4, 5]);
        assert!(
            error("id > -9223372036854775809")
                .message
                .contains("64-bit")
        );
    }

    /// A condition as a string, and what it means for one row.
    #[derive(Debug, Clone)]
    enum Gen {
        Age(CmpOp, i64),
        Name(CmpOp, String),
        AgeIn(Vec<i64>),
        Flag,
        And(Box<Gen>, Box<Gen>),
        Or(Box<Gen>, Box<Gen>),
        Not(Box<Gen>),
    }

    fn render(g: &Gen) -> String {
        match g {
            Gen::Age(op, v) => format!("age {} {v}", op.text()),
            Gen::Name(op, v) => format!("name {} {v:?}", op.text()),
            Gen::AgeIn(vs) => format!("age in {vs:?}"),
            Gen::Flag => "flag".into(),
            Gen::And(a, b) => format!("({} and {})", render(a), render(b)),
            Gen::Or(a, b) => format!("({} || {})", render(a), render(b)),
            Gen::Not(a) => format!("not {}", render(a)),
        }
    }

    /// The oracle: one row at a time, straight from the meaning.
    fn holds(g: &Gen, age: i32, name: &str, flag: bool) -> bool {
        let cmp = |op: CmpOp, o: std::cmp::Ordering| op.holds(Some(o));
        match g {
            Gen::Age(op, v) => cmp(*op, i64::from(age).cmp(v)),
            Gen::Name(op, v) => cmp(*op, name.cmp(v.as_str())),
            Gen::AgeIn(vs) => vs.contains(&i64::from(age)),
            Gen::Flag => flag,
            Gen::And(a, b) => holds(a, age, name, flag) && holds(b, age, name, flag),
            Gen::Or(a, b) => holds(a, age, name, flag) || holds(b, age, name, flag),
            Gen::Not(a) => !holds(a, age, name, flag),
        }
    }

    fn gen_expr() -> impl Strategy<Value = Gen> {
        let op = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge)
        ];
        let leaf = prop_oneof![
            (op.clone(), -130i64..130).prop_map(|(o, v)| Gen::Age(o, v)),
            (op, "[ab\"']{0,3}").prop_map(|(o, v)| Gen::Name(o, v)),
            proptest::collection::vec(-130i64..130, 0..4).prop_map(Gen::AgeIn),
            Just(Gen::Flag),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::And(a.into(), b.into())),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::Or(a.into(), b.into())),
                inner.prop_map(|a| Gen::Not(a.into())),
            ]
        })
    }

    proptest! {
        /// Column-at-a-time evaluation of the parsed text agrees with the row
        /// oracle on the meaning it was rendered from.
        #[test]
        fn parsed_filters_select_what_they_mean(
            g in gen_expr(),
            rows in proptest::collection::vec((-128i32..128, "[ab\"']{0,3}", any::<bool>()), 0..20),
        ) {
            let text = render(&g);
            let filter = Filter::parse(&text, &schema()).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            let tuples: Vec<(i64, i32, f32, f64, &str, bool)> = rows
                .iter()
                .enumerate()
                .map(|(i, (age, name, flag))| (i as i64, *age, 0.0, 0.0, name.as_str(), *flag))
                .collect();
            let selected = filter.select(&batch(&tuples));
            for ((age, name, flag), got) in rows.iter().zip(selected) {
                prop_assert_eq!(got, holds(&g, *age, name, *flag), "{} on {:?}", text, (age, name, flag));
            }
        }

        /// No text makes the parser panic; whatever parses selects one answer per row.
        #[test]
        fn any_text_parses_or_is_refused(text in "[ -~]{0,40}") {
            if let Ok(f) = Filter::parse(&text, &schema()) {
                prop_assert_eq!(f.select(&people()).len(), 5);
            }
        }
    }

    /// `id`, `age` (INT32), `doc` (JSON), `v` and the dynamic field `$meta`.
    fn json_schema() -> CollectionSchema {
        schema_of(
            "things",
            vec![
                field("id", proto::DataType::Int64),
                field("age", proto::DataType::Int32),
                field("doc", proto::DataType::Json),
                field("v", proto::DataType::FloatVector),
                proto::FieldSchema {
                    name: "$meta".into(),
                    data_type: proto::DataType::Json.into(),
                    is_dynamic: true,
                    ..proto::FieldSchema::default()
                },
            ],
        )
    }

    /// Rows 1 to 6 of [`json_schema`]; row 6 holds text that is not JSON.
    fn json_rows() -> RowBatch {
        let rows: [(i32, &str, &str); 6] = [
            (
                10,
                r#"{"a": 1, "s": "red", "b": true, "n": {"x": 2.5, "y": [10, 20]}, "list": [1, "two", false]}"#,
                r#"{"color": "red", "size": 3, "on": true}"#,
            ),
            (
                20,
                r#"{"a": 2.5, "s": "blue", "b": false, "n": {"x": -1}, "list": []}"#,
                r#"{"color": "blue", "size": 10.0, "on": false}"#,
            ),
            (
                30,
                r#"{"a": "1", "s": 5, "b": "true", "n": null, "list": [2]}"#,
                r#"{"color": 7, "tags": ["x", "y"]}"#,
            ),
            (
                40,
                r#"{"a": 9007199254740993, "big": 18446744073709551615}"#,
                "{}",
            ),
            (
                50,
                "[1, 2, 3]",
                r#"{"size": -3, "color": "reddish", "age": 99}"#,
            ),
            (60, "{not json", "[]"),
        ];
        RowBatch {
            columns: vec![
                Column::Long((1..=6).collect()),
                Column::Int(rows.iter().map(|r| r.0).collect()),
                Column::Str(rows.iter().map(|r| r.1.to_owned()).collect()),
                Column::Vector {
                    dim: 2,
                    values: vec![0.0; rows.len() * 2].into(),
                },
                Column::Str(rows.iter().map(|r| r.2.to_owned()).collect()),
            ],
            num_rows: rows.len(),
        }
    }

    /// The ids of the rows of [`json_rows`] `filter` keeps.
    fn json_ids(filter: &str) -> Vec<i64> {
        let f = Filter::parse(filter, &json_schema()).unwrap_or_else(|e| panic!("{filter}: {e}"));
        (1..=6)
            .zip(f.select(&json_rows()))
            .filter(|(_, keep)| *keep)
            .map(|(id, _)| id)
            .collect()
    }

    fn json_error(filter: &str) -> FilterError {
        Filter::parse(filter, &json_schema()).expect_err(filter)
    }

    #[test]
    fn json_paths_compare_values_of_their_type() {
        assert_eq!(
            json_ids(r#"doc["a"] == 1"#),
            [1],
            "the string \"1\" is no number"
        );
        assert_eq!(json_ids(r#"doc["a"] == 1.0"#), [1]);
        assert_eq!(
            json_ids(r#"doc['a'] != 1"#),
            [2, 4],
            "missing or a string: no match"
        );
        assert_eq!(json_ids(r#"doc["a"] > 1"#), [2, 4]);
        assert_eq!(json_ids(r#"doc["a"] >= 2.5"#), [2, 4]);
        assert_eq!(json_ids(r#"doc["a"] <= 2.5"#), [1, 2]);
        assert_eq!(json_ids(r#"doc["a"] < 2"#), [1]);
        assert_eq!(json_ids(r#"doc["a"] == "1""#), [3]);
        assert_eq!(json_ids(r#"doc["a"] > "0""#), [3]);
        assert_eq!(json_ids(r#"doc["s"] < "c""#), [2]);
        assert_eq!(json_ids(r#"doc["s"] == 5"#), [3]);
        assert_eq!(json_ids(r#"doc["b"] == true"#), [1]);
        assert_eq!(
            json_ids(r#"doc["b"] != true"#),
            [2],
            "the string \"true\" is no boolean"
        );
        assert_eq!(
            json_ids(r#"doc["b"]"#),
            [1],
            "a path alone holds where it is true"
        );
        assert_eq!(json_ids(r#"doc["s"]"#), Vec::<i64>::new());
        assert_eq!(json_ids(r#"not doc["b"]"#), [2, 3, 4, 5, 6]);
        assert_eq!(
            json_ids(r#"doc["n"] == 1"#),
            Vec::<i64>::new(),
            "null and objects"
        );
        assert_eq!(json_ids(r#"1 < doc["a"] < 5"#), [2]);
        assert_eq!(json_ids(r#"0 <= doc["a"] <= 1"#), [1]);
        assert_eq!(json_ids(r#"2 > doc["a"]"#), [1]);
        assert_eq!(json_ids(r#"true == doc["b"]"#), [1]);
    }

    #[test]
    fn json_paths_walk_objects_and_arrays() {
        assert_eq!(json_ids(r#"doc["n"]["x"] == 2.5"#), [1]);
        assert_eq!(json_ids(r#"doc["n"]["x"] < 0"#), [2]);
        assert_eq!(json_ids(r#"doc["n"]["y"][1] == 20"#), [1]);
        assert_eq!(
            json_ids(r#"doc["n"]["y"][2] == 20"#),
            Vec::<i64>::new(),
            "past the end"
        );
        assert_eq!(json_ids(r#"doc["list"][1] == "two""#), [1]);
        assert_eq!(json_ids(r#"doc["list"][0] >= 1"#), [1, 3]);
        assert_eq!(json_ids(r#"doc["list"][2] == false"#), [1]);
        assert_eq!(json_ids("doc[0] == 1"), [5], "a document may be an array");
        assert_eq!(
            json_ids(r#"doc["n"][0] == 1"#),
            Vec::<i64>::new(),
            "no index into an object"
        );
        assert_eq!(
            json_ids(r#"doc["list"]["0"] == 1"#),
            Vec::<i64>::new(),
            "no key into an array"
        );
        assert_eq!(json_ids(r#"doc["n"]["x"]["deep"] == 1"#), Vec::<i64>::new());
        assert_eq!(
            json_ids("doc[18446744073709551615] == 1"),
            Vec::<i64>::new()
        );
        assert_eq!(
            json_ids(r#"doc [ "n" ] [ "y" ] [ 0 ] == 10"#),
            [1],
            "blanks between steps"
        );
    }

    #[test]
    fn json_numbers_compare_exactly() {
        assert_eq!(json_ids(r#"doc["a"] == 9007199254740993"#), [4]);
        assert_eq!(
            json_ids(r#"doc["a"] == 9007199254740992"#),
            Vec::<i64>::new()
        );
        assert_eq!(json_ids(r#"doc["a"] > 9007199254740992"#), [4]);
        assert_eq!(json_ids(r#"doc["a"] > 9007199254740992.0"#), [4]);
        assert_eq!(
            json_ids(r#"doc["a"] in [9007199254740992.0]"#),
            Vec::<i64>::new()
        );
        assert_eq!(
            json_ids(r#"doc["big"] > 9223372036854775807"#),
            [4],
            "u64 beyond i64"
        );
        assert_eq!(
            json_ids(r#"doc["big"] == 1.8446744073709552e19"#),
            Vec::<i64>::new(),
            "2^64 is one more"
        );
        assert_eq!(json_ids(r#"doc["big"] < 1.8446744073709552e19"#), [4]);
        assert_eq!(json_ids(r#"doc["big"] > 1e300"#), Vec::<i64>::new());
        assert_eq!(json_ids("size == 10"), [2], "10.0 in the JSON");
        assert_eq!(json_ids("size in [10, 3]"), [1, 2]);
        assert_eq!(json_ids("size > -3.5"), [1, 2, 5]);
        assert_eq!(json_ids("size < -2.5"), [5]);
        assert_eq!(json_ids("-3 == $meta[\"size\"]"), [5]);
        assert_eq!(json_ids("size in [-0.0]"), Vec::<i64>::new());
    }

    #[test]
    fn json_lists_patterns_and_logic() {
        assert_eq!(json_ids(r#"doc["a"] in [1, 2.5]"#), [1, 2]);
        assert_eq!(
            json_ids(r#"doc["a"] in [1, "1"]"#),
            [1, 3],
            "a list may mix types"
        );
        assert_eq!(json_ids(r#"doc["a"] in []"#), Vec::<i64>::new());
        assert_eq!(
            json_ids(r#"doc["a"] not in [1]"#),
            [2, 4],
            "only numbers are compared"
        );
        assert_eq!(json_ids(r#"doc["a"] not in [1, 'x']"#), [2, 3, 4]);
        assert_eq!(json_ids(r#"doc["a"] not in []"#), Vec::<i64>::new());
        assert_eq!(json_ids(r#"doc["b"] in [false]"#), [2]);
        assert_eq!(json_ids(r#"doc["b"] not in [false]"#), [1]);
        assert_eq!(json_ids(r#"not (doc["a"] in [1])"#), [2, 3, 4, 5, 6]);
        assert_eq!(json_ids(r#"not (doc["a"] != 1)"#), [1, 3, 5, 6]);
        assert_eq!(json_ids(r#"!(doc["a"] not in [1])"#), [1, 3, 5, 6]);
        assert_eq!(json_ids(r#"doc["s"] like "r%""#), [1]);
        assert_eq!(json_ids(r#"doc["s"] like "%e%""#), [1, 2]);
        assert_eq!(
            json_ids(r#"doc["a"] like "1""#),
            [3],
            "only strings match patterns"
        );
        assert_eq!(json_ids(r#"doc["n"]["x"] like "%""#), Vec::<i64>::new());
        assert_eq!(
            json_ids(r#"doc["s"] == 'red' or doc["s"] == "blue""#),
            [1, 2]
        );
        assert_eq!(json_ids(r#"doc["b"] and age > 5"#), [1]);
        assert_eq!(json_ids(r#"doc["a"] >= 1 && !(age == 20)"#), [1, 4]);
    }

    #[test]
    fn names_that_are_no_field_are_dynamic_keys() {
        assert_eq!(json_ids(r#"color == "red""#), [1]);
        assert_eq!(json_ids(r#"$meta["color"] == "red""#), [1]);
        assert_eq!(json_ids("color like 'red%'"), [1, 5]);
        assert_eq!(
            json_ids("color != 'red'"),
            [2, 5],
            "7 and missing keys do not match"
        );
        assert_eq!(json_ids("color in ['red', 7]"), [1, 3]);
        assert_eq!(json_ids("color not in ['red', 7]"), [2, 5]);
        assert_eq!(json_ids("size > 2"), [1, 2]);
        assert_eq!(json_ids("on"), [1]);
        assert_eq!(json_ids("!on"), [2, 3, 4, 5, 6]);
        assert_eq!(json_ids("on == false"), [2]);
        assert_eq!(json_ids("tags[1] == 'y'"), [3]);
        assert_eq!(json_ids("$meta['tags'][0] == 'x'"), [3]);
        assert_eq!(json_ids("age > 50"), [6], "a field wins over a key");
        assert_eq!(json_ids("$meta[\"age\"] == 99"), [5]);
        assert_eq!(json_ids("missing == 1"), Vec::<i64>::new());
        assert_eq!(json_ids("missing != 1"), Vec::<i64>::new());
        assert_eq!(json_ids("not (missing == 1)"), [1, 2, 3, 4, 5, 6]);
        assert_eq!(json_ids("$meta['a b'] == 1 or color == 'blue'"), [2]);
    }

    #[test]
    fn json_mistakes_name_the_problem_and_the_place() {
        let e = json_error("doc[");
        assert_eq!(e.at, 4);
        assert!(
            e.message
                .contains("expected a quoted key or an array index after `[`, found the end"),
            "{e}"
        );
        let e = json_error("doc[1.5] == 1");
        assert_eq!(e.at, 4);
        assert!(e.message.contains("whole number from 0, not 1.5"), "{e}");
        let e = json_error("doc[-1] == 1");
        assert_eq!(e.at, 4);
        assert!(e.message.contains("not negative"), "{e}");
        let e = json_error(r#"doc["a" == 1"#);
        assert_eq!(e.at, 8);
        assert!(
            e.message
                .contains("expected `]` closing the path step, found `==`"),
            "{e}"
        );
        let e = json_error(r#"doc["a""#);
        assert_eq!(e.at, 7);
        assert!(e.message.contains("found the end"), "{e}");
        assert!(
            json_error("doc[a] == 1")
                .message
                .contains("found name \"a\"")
        );
        assert!(json_error("doc[] == 1").message.contains("found `]`"));
        let e = json_error(r#"age["a"] == 1"#);
        assert_eq!(e.at, 3);
        assert!(
            e.message
                .contains("field \"age\" is INT32; only a JSON field takes a path"),
            "{e}"
        );
        assert!(
            json_error("v[0] == 1")
                .message
                .contains("\"v\" is FLOAT_VECTOR")
        );
        let e = json_error("doc == 1");
        assert_eq!(e.at, 0);
        assert!(
            e.message.contains(
                "field \"doc\" is JSON; a filter compares a value inside it, as `doc[\"key\"]`"
            ),
            "{e}"
        );
        assert!(
            json_error("$meta in [1]")
                .message
                .contains("`$meta[\"key\"]`")
        );
        let e = json_error(r#"doc["a"][0] < true"#);
        assert_eq!(e.at, 14);
        assert!(
            e.message
                .contains("doc[\"a\"][0] cannot be compared with `<`"),
            "{e}"
        );
        assert!(
            e.message.contains("only `==` and `!=` compare booleans"),
            "{e}"
        );
        assert!(
            json_error("on >= false")
                .message
                .contains("$meta[\"on\"] cannot be compared")
        );
        assert!(
            json_error(r#"doc["a"] like 3"#)
                .message
                .contains("`like` takes a quoted pattern")
        );
        let e = json_error(r#"1 < doc["a"] > 3"#);
        assert!(e.message.contains("a range around doc[\"a\"] takes"), "{e}");
        assert!(
            json_error("color == size")
                .message
                .contains("not with another field")
        );
        assert!(
            json_error(r#"doc["a"] doc["b"]"#)
                .message
                .contains("join conditions")
        );
        let e = json_error("size > 1 or $ == 1");
        assert_eq!(e.at, 12);
        assert!(e.message.contains("only `$meta`"), "{e}");
        assert!(
            json_error("$metadata == 1")
                .message
                .contains("name \"$metadata\"")
        );
        // Without a dynamic field, unknown names stay unknown.
        let e = error("color == 'red'");
        assert_eq!(e.at, 0);
        assert!(e.message.contains("unknown field \"color\""), "{e}");
        let e = error("$meta['color'] == 'red'");
        assert!(e.message.contains("unknown field \"$meta\""), "{e}");
        assert!(
            error("name['a'] == 1")
                .message
                .contains("is VARCHAR; only a JSON field")
        );
    }

    /// A number as JSON and as a filter writes it: small whole numbers, or
    /// quarters, so that f64 is an exact oracle.
    fn gen_number() -> impl Strategy<Value = (f64, String, String)> {
        prop_oneof![
            (-(1i64 << 53)..(1i64 << 53)).prop_map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let f = i as f64;
                (f, i.to_string(), i.to_string())
            }),
            (-400i32..400).prop_map(|k| {
                let f = f64::from(k) / 4.0;
                (f, serde_json::json!(f).to_string(), format!("{f:?}"))
            }),
        ]
    }

    proptest! {
        /// Numbers at a path compare by value however either side writes them.
        #[test]
        fn json_numbers_compare_as_numbers(
            (value, json, _) in gen_number(),
            (literal, _, text) in gen_number(),
            op in prop_oneof![
                Just(CmpOp::Eq),
                Just(CmpOp::Ne),
                Just(CmpOp::Lt),
                Just(CmpOp::Le),
                Just(CmpOp::Gt),
                Just(CmpOp::Ge)
            ],
        ) {
            let mut rows = json_rows();
            rows.columns[4] = Column::Str(vec![format!("{{\"x\": {json}}}"); 6]);
            let select = |f: &str| Filter::parse(f, &json_schema()).map(|f| f.select(&rows)[0]);
            let filter = format!("x {} {text}", op.text());
            prop_assert_eq!(select(&filter), Ok(op.holds(value.partial_cmp(&literal))), "{}", filter);
            let filter = format!("x in [{text}]");
            prop_assert_eq!(select(&filter), Ok(value == literal), "{}", filter);
        }

        /// No arrangement of path pieces makes parsing or evaluation panic.
        #[test]
        fn any_json_text_parses_or_is_refused(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "doc", "$meta", "color", "age", "v", "[", "]", "\"a\"", "'n'", "0", "1",
                    "1.5", "-", "==", "!=", "<", ">=", "in", "not", "like", "'r%'", "and",
                    "or", "(", ")", ",", "true", "\"", "$",
                ]),
                0..12,
            ),
            sep in prop_oneof![Just(""), Just(" ")],
        ) {
            let text = pieces.join(sep);
            if let Ok(f) = Filter::parse(&text, &json_schema()) {
                prop_assert_eq!(f.select(&json_rows()).len(), 6);
            }
        }
    }
}
