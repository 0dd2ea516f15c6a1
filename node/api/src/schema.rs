//! Collection schemas, validated when they arrive from the wire.

use crate::proto;

/// Most fields a collection may have.
pub const MAX_FIELDS: usize = 64;
/// Largest vector dimension.
pub const MAX_DIM: u32 = 32_768;
/// Largest `max_length` of a VARCHAR field.
pub const MAX_VARCHAR_LENGTH: u32 = 65_535;
/// Largest JSON value, in bytes of UTF-8 text (Milvus's default limit).
pub const MAX_JSON_BYTES: usize = 65_536;
/// What a JSON value counts for in segment sizing: values may be larger (up to
/// [`MAX_JSON_BYTES`]), but counting every one at its maximum would make a
/// segment hold a few thousand rows.
pub const JSON_SIZING_BYTES: u64 = 1024;
/// The name of a collection's dynamic field (Milvus's).
pub const DYNAMIC_FIELD_NAME: &str = "$meta";
/// Longest collection or field name, in bytes.
pub const MAX_NAME_LENGTH: usize = 255;
/// Column names the segment files use for system data.
pub const RESERVED_FIELD_NAMES: &[&str] = &["_ts"];
/// The partition every collection is created with, and the one a write goes to
/// when it names none (Milvus's name for it).
pub const DEFAULT_PARTITION: &str = "_default";

/// Why a schema was refused. Each message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{what} name {name:?} is invalid: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error(
        "the schema has no fields; it needs an INT64 or VARCHAR primary key and a FLOAT_VECTOR field"
    )]
    NoFields,
    #[error("the schema has {0} fields; at most {MAX_FIELDS} are allowed")]
    TooManyFields(usize),
    #[error("field {0:?} appears more than once")]
    DuplicateField(String),
    #[error("field {field:?} has no valid data type (got {raw})")]
    UnknownType { field: String, raw: i32 },
    #[error("the schema has no primary key; mark one INT64 or VARCHAR field with is_primary_key")]
    NoPrimaryKey,
    #[error("fields {0:?} and {1:?} are both marked as primary key; exactly one is allowed")]
    TwoPrimaryKeys(String, String),
    #[error("primary key field {field:?} is {ty}; the primary key must be INT64 or VARCHAR")]
    PrimaryKeyType { field: String, ty: &'static str },
    #[error("the schema has no FLOAT_VECTOR field; exactly one is required")]
    NoVectorField,
    #[error("fields {0:?} and {1:?} are both FLOAT_VECTOR; exactly one is allowed")]
    TwoVectorFields(String, String),
    #[error("vector field {field:?} has dim {dim}; it must be between 1 and {MAX_DIM}")]
    BadDim { field: String, dim: u32 },
    #[error(
        "VARCHAR field {field:?} has max_length {len}; it must be between 1 and {MAX_VARCHAR_LENGTH}"
    )]
    BadMaxLength { field: String, len: u32 },
    #[error("metric type {0} is unknown; it is L2, IP or COSINE")]
    UnknownMetric(i32),
    #[error("index: {0}")]
    BadIndex(String),
    #[error("collection {0} has no schema")]
    Missing(i64),
    #[error("field {field:?} is {ty} but sets {attr}; only {owner} fields may")]
    MisplacedAttribute {
        field: String,
        ty: &'static str,
        attr: &'static str,
        owner: &'static str,
    },
    #[error("field {0:?} sets auto_id; only the primary key may")]
    AutoIdNotPrimary(String),
    #[error("field {0:?} is dynamic; the dynamic field is a JSON field named \"$meta\"")]
    BadDynamicField(String),
    #[error("fields {0:?} and {1:?} are both dynamic; at most one is allowed")]
    TwoDynamicFields(String, String),
}

/// The type of one field, with the attributes that type needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Float,
    Double,
    VarChar {
        max_length: u32,
    },
    /// JSON text, checked to parse when inserted.
    Json,
    FloatVector {
        dim: u32,
    },
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Float => "FLOAT",
            Self::Double => "DOUBLE",
            Self::VarChar { .. } => "VARCHAR",
            Self::Json => "JSON",
            Self::FloatVector { .. } => "FLOAT_VECTOR",
        }
    }

    /// Bytes one value takes in a row, for segment sizing (VARCHAR counts its
    /// maximum, JSON [`JSON_SIZING_BYTES`]).
    pub fn row_bytes(self) -> u64 {
        match self {
            Self::Bool | Self::Int8 => 1,
            Self::Int16 => 2,
            Self::Int32 | Self::Float => 4,
            Self::Int64 | Self::Double => 8,
            Self::VarChar { max_length } => u64::from(max_length),
            Self::Json => JSON_SIZING_BYTES,
            Self::FloatVector { dim } => 4 * u64::from(dim),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSchema {
    pub name: String,
    pub ty: FieldType,
    pub is_primary_key: bool,
    /// The primary key's values are given by the proxy, not by inserts.
    pub auto_id: bool,
    /// The collection's dynamic field (JSON, named [`DYNAMIC_FIELD_NAME`]).
    pub is_dynamic: bool,
    pub description: String,
}

/// How a collection's vectors are compared (Milvus's names in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Metric {
    /// Euclidean distance, squared (`L2`): smaller is nearer. The default.
    #[default]
    L2,
    /// Inner product (`IP`): larger is nearer.
    InnerProduct,
    /// Cosine similarity (`COSINE`): larger is nearer.
    Cosine,
}

impl Metric {
    /// Milvus's name: `L2`, `IP`, `COSINE`.
    pub fn name(self) -> &'static str {
        match self {
            Self::L2 => "L2",
            Self::InnerProduct => "IP",
            Self::Cosine => "COSINE",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    /// `l2`, `ip` (or `inner_product`), `cosine`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "l2" => Ok(Self::L2),
            "ip" | "inner_product" => Ok(Self::InnerProduct),
            "cosine" => Ok(Self::Cosine),
            _ => Err(format!("metric {s:?} is unknown; it is l2, ip or cosine")),
        }
    }
}

impl TryFrom<i32> for Metric {
    type Error = SchemaError;

    /// A wire `MetricType`; unspecified is L2 (schemas from before the metric).
    fn try_from(raw: i32) -> Result<Self, SchemaError> {
        use proto::MetricType as M;
        match M::try_from(raw) {
            Ok(M::Unspecified | M::L2) => Ok(Self::L2),
            Ok(M::Ip) => Ok(Self::InnerProduct),
            Ok(M::Cosine) => Ok(Self::Cosine),
            Err(_) => Err(SchemaError::UnknownMetric(raw)),
        }
    }
}

impl From<Metric> for proto::MetricType {
    fn from(m: Metric) -> Self {
        match m {
            Metric::L2 => Self::L2,
            Metric::InnerProduct => Self::Ip,
            Metric::Cosine => Self::Cosine,
        }
    }
}

/// How a collection's flushed files are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSpec {
    /// No index: searches are exact.
    Flat,
    /// HNSW graphs (Milvus's `M` and `efConstruction`).
    Hnsw { m: u32, ef_construction: u32 },
    /// Not chosen yet (a collection created through Milvus's API, whose
    /// `CreateIndex` chooses it later): searched exactly meanwhile, and not
    /// loadable until chosen.
    NotChosen,
}

/// HNSW's `M` when a schema sets none.
pub const HNSW_DEFAULT_M: u32 = 16;
/// HNSW's `efConstruction` when a schema sets none.
pub const HNSW_DEFAULT_EF_CONSTRUCTION: u32 = 200;

impl Default for IndexSpec {
    fn default() -> Self {
        Self::Hnsw {
            m: HNSW_DEFAULT_M,
            ef_construction: HNSW_DEFAULT_EF_CONSTRUCTION,
        }
    }
}

impl IndexSpec {
    /// HNSW with these parameters, if they are in range: `M` 2 to 256 (the
    /// graph library's limit), `efConstruction` 1 to 10000.
    pub fn hnsw(m: u32, ef_construction: u32) -> Result<Self, SchemaError> {
        if !(2..=256).contains(&m) {
            return Err(SchemaError::BadIndex(format!(
                "HNSW M is {m}; it must be 2 to 256"
            )));
        }
        if !(1..=10_000).contains(&ef_construction) {
            return Err(SchemaError::BadIndex(format!(
                "HNSW efConstruction is {ef_construction}; it must be 1 to 10000"
            )));
        }
        Ok(Self::Hnsw { m, ef_construction })
    }

    /// Milvus's name: `FLAT` or `HNSW` (`NONE` when not chosen yet).
    pub fn name(self) -> &'static str {
        match self {
            Self::Flat => "FLAT",
            Self::Hnsw { .. } => "HNSW",
            Self::NotChosen => "NONE",
        }
    }
}

impl TryFrom<Option<proto::IndexParams>> for IndexSpec {
    type Error = SchemaError;

    /// Unset or unspecified: HNSW; zero parameters take the defaults.
    fn try_from(p: Option<proto::IndexParams>) -> Result<Self, SchemaError> {
        let Some(p) = p else {
            return Ok(Self::default());
        };
        let kind = proto::IndexType::try_from(p.index_type).map_err(|_| {
            SchemaError::BadIndex(format!(
                "index type {} is unknown; it is FLAT or HNSW",
                p.index_type
            ))
        })?;
        match kind {
            proto::IndexType::Flat => Ok(Self::Flat),
            proto::IndexType::None => Ok(Self::NotChosen),
            proto::IndexType::Unspecified | proto::IndexType::Hnsw => {
                let or = |v: u32, default: u32| if v == 0 { default } else { v };
                Self::hnsw(
                    or(p.m, HNSW_DEFAULT_M),
                    or(p.ef_construction, HNSW_DEFAULT_EF_CONSTRUCTION),
                )
            }
        }
    }
}

impl From<IndexSpec> for proto::IndexParams {
    fn from(spec: IndexSpec) -> Self {
        match spec {
            IndexSpec::Flat => Self {
                index_type: proto::IndexType::Flat.into(),
                m: 0,
                ef_construction: 0,
            },
            IndexSpec::Hnsw { m, ef_construction } => Self {
                index_type: proto::IndexType::Hnsw.into(),
                m,
                ef_construction,
            },
            IndexSpec::NotChosen => Self {
                index_type: proto::IndexType::None.into(),
                m: 0,
                ef_construction: 0,
            },
        }
    }
}

/// A schema that passed validation: exactly one INT64 or VARCHAR primary key, exactly one
/// FLOAT_VECTOR field with a sane dimension, optional scalar fields, unique valid
/// names, and the metric its vectors are compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSchema {
    pub name: String,
    pub description: String,
    fields: Vec<FieldSchema>,
    pub metric: Metric,
    pub index: IndexSpec,
}

impl CollectionSchema {
    pub fn fields(&self) -> &[FieldSchema] {
        &self.fields
    }

    /// Whether flushed files get HNSW graphs (FLAT, and an index not chosen
    /// yet or dropped, have none: every search is exact).
    pub fn is_graph_indexed(&self) -> bool {
        matches!(self.index, IndexSpec::Hnsw { .. })
    }

    /// The position of the primary key among the fields (and the columns of a
    /// batch).
    pub fn primary_key_index(&self) -> usize {
        // Validation guarantees exactly one.
        self.fields
            .iter()
            .position(|f| f.is_primary_key)
            .unwrap_or(0)
    }

    /// The field names, comma separated, for messages: `id, title, vector`.
    pub fn field_list(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The smallest valid schema: an INT64 primary key `id` and a FLOAT_VECTOR
    /// `vector` of `dim` (L2, default index).
    pub fn vectors_only(name: &str, dim: u32) -> Result<Self, SchemaError> {
        Self::try_from(proto::CollectionSchema {
            name: name.into(),
            fields: vec![
                proto::FieldSchema {
                    name: "id".into(),
                    data_type: proto::DataType::Int64.into(),
                    is_primary_key: true,
                    ..proto::FieldSchema::default()
                },
                proto::FieldSchema {
                    name: "vector".into(),
                    data_type: proto::DataType::FloatVector.into(),
                    dim,
                    ..proto::FieldSchema::default()
                },
            ],
            ..proto::CollectionSchema::default()
        })
    }

    /// The dynamic field, if the collection has one.
    pub fn dynamic_field(&self) -> Option<(usize, &FieldSchema)> {
        self.fields.iter().enumerate().find(|(_, f)| f.is_dynamic)
    }

    pub fn primary_key(&self) -> &FieldSchema {
        // Validation guarantees exactly one.
        self.fields
            .iter()
            .find(|f| f.is_primary_key)
            .unwrap_or(&self.fields[0])
    }

    /// The vector field and its dimension.
    pub fn vector_field(&self) -> (&FieldSchema, u32) {
        self.fields
            .iter()
            .find_map(|f| match f.ty {
                FieldType::FloatVector { dim } => Some((f, dim)),
                _ => None,
            })
            .unwrap_or((&self.fields[0], 0))
    }

    /// Upper bound of one row's size in bytes, plus the 8-byte timestamp.
    pub fn row_bytes(&self) -> u64 {
        8 + self.fields.iter().map(|f| f.ty.row_bytes()).sum::<u64>()
    }
}

/// Checks a collection or field name.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), SchemaError> {
    let invalid = |reason| SchemaError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("it is empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(invalid("it must start with a letter or '_'"));
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(invalid("it is longer than 255 bytes"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid("only letters, digits and '_' are allowed"));
    }
    if what == "field" && RESERVED_FIELD_NAMES.contains(&name) {
        return Err(invalid("it is reserved for the system (row timestamps)"));
    }
    Ok(())
}

impl TryFrom<proto::FieldSchema> for FieldSchema {
    type Error = SchemaError;

    fn try_from(f: proto::FieldSchema) -> Result<Self, SchemaError> {
        use proto::DataType as D;
        if f.is_dynamic {
            if f.name != DYNAMIC_FIELD_NAME || f.data_type != D::Json as i32 || f.is_primary_key {
                return Err(SchemaError::BadDynamicField(f.name));
            }
        } else {
            validate_name("field", &f.name)?;
        }
        let ty = match D::try_from(f.data_type) {
            Ok(D::Bool) => FieldType::Bool,
            Ok(D::Int8) => FieldType::Int8,
            Ok(D::Int16) => FieldType::Int16,
            Ok(D::Int32) => FieldType::Int32,
            Ok(D::Int64) => FieldType::Int64,
            Ok(D::Float) => FieldType::Float,
            Ok(D::Double) => FieldType::Double,
            Ok(D::Varchar) => {
                if f.max_length == 0 || f.max_length > MAX_VARCHAR_LENGTH {
                    return Err(SchemaError::BadMaxLength {
                        field: f.name,
                        len: f.max_length,
                    });
                }
                FieldType::VarChar {
                    max_length: f.max_length,
                }
            }
            Ok(D::Json) => FieldType::Json,
            Ok(D::FloatVector) => {
                if f.dim == 0 || f.dim > MAX_DIM {
                    return Err(SchemaError::BadDim {
                        field: f.name,
                        dim: f.dim,
                    });
                }
                FieldType::FloatVector { dim: f.dim }
            }
            Ok(D::Unspecified) | Err(_) => {
                return Err(SchemaError::UnknownType {
                    field: f.name,
                    raw: f.data_type,
                });
            }
        };
        let misplaced = |attr, owner| SchemaError::MisplacedAttribute {
            field: f.name.clone(),
            ty: ty.name(),
            attr,
            owner,
        };
        if f.dim != 0 && !matches!(ty, FieldType::FloatVector { .. }) {
            return Err(misplaced("dim", "FLOAT_VECTOR"));
        }
        if f.max_length != 0 && !matches!(ty, FieldType::VarChar { .. }) {
            return Err(misplaced("max_length", "VARCHAR"));
        }
        if f.is_primary_key && !matches!(ty, FieldType::Int64 | FieldType::VarChar { .. }) {
            return Err(SchemaError::PrimaryKeyType {
                field: f.name,
                ty: ty.name(),
            });
        }
        if f.auto_id && !f.is_primary_key {
            return Err(SchemaError::AutoIdNotPrimary(f.name));
        }
        Ok(Self {
            name: f.name,
            ty,
            is_primary_key: f.is_primary_key,
            auto_id: f.auto_id,
            is_dynamic: f.is_dynamic,
            description: f.description,
        })
    }
}

impl TryFrom<proto::CollectionSchema> for CollectionSchema {
    type Error = SchemaError;

    fn try_from(s: proto::CollectionSchema) -> Result<Self, SchemaError> {
        validate_name("collection", &s.name)?;
        let metric = Metric::try_from(s.metric_type)?;
        let index = IndexSpec::try_from(s.index)?;
        if s.fields.is_empty() {
            return Err(SchemaError::NoFields);
        }
        if s.fields.len() > MAX_FIELDS {
            return Err(SchemaError::TooManyFields(s.fields.len()));
        }
        let fields = s
            .fields
            .into_iter()
            .map(FieldSchema::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = std::collections::HashSet::new();
        for f in &fields {
            if !names.insert(f.name.as_str()) {
                return Err(SchemaError::DuplicateField(f.name.clone()));
            }
        }
        let mut primary = fields.iter().filter(|f| f.is_primary_key);
        match (primary.next(), primary.next()) {
            (None, _) => return Err(SchemaError::NoPrimaryKey),
            (Some(a), Some(b)) => {
                return Err(SchemaError::TwoPrimaryKeys(a.name.clone(), b.name.clone()));
            }
            (Some(_), None) => {}
        }
        let mut vectors = fields
            .iter()
            .filter(|f| matches!(f.ty, FieldType::FloatVector { .. }));
        match (vectors.next(), vectors.next()) {
            (None, _) => return Err(SchemaError::NoVectorField),
            (Some(a), Some(b)) => {
                return Err(SchemaError::TwoVectorFields(a.name.clone(), b.name.clone()));
            }
            (Some(_), None) => {}
        }
        let mut dynamic = fields.iter().filter(|f| f.is_dynamic);
        if let (Some(a), Some(b)) = (dynamic.next(), dynamic.next()) {
            return Err(SchemaError::TwoDynamicFields(
                a.name.clone(),
                b.name.clone(),
            ));
        }
        Ok(Self {
            name: s.name,
            description: s.description,
            fields,
            metric,
            index,
        })
    }
}

impl TryFrom<&proto::CollectionInfo> for CollectionSchema {
    type Error = SchemaError;

    /// The validated schema of a collection as the root coordinator describes it.
    fn try_from(info: &proto::CollectionInfo) -> Result<Self, SchemaError> {
        let schema = info.schema.clone().ok_or(SchemaError::Missing(info.id))?;
        Self::try_from(schema)
    }
}

impl From<&FieldSchema> for proto::FieldSchema {
    fn from(f: &FieldSchema) -> Self {
        use proto::DataType as D;
        let (data_type, dim, max_length) = match f.ty {
            FieldType::Bool => (D::Bool, 0, 0),
            FieldType::Int8 => (D::Int8, 0, 0),
            FieldType::Int16 => (D::Int16, 0, 0),
            FieldType::Int32 => (D::Int32, 0, 0),
            FieldType::Int64 => (D::Int64, 0, 0),
            FieldType::Float => (D::Float, 0, 0),
            FieldType::Double => (D::Double, 0, 0),
            FieldType::VarChar { max_length } => (D::Varchar, 0, max_length),
            FieldType::Json => (D::Json, 0, 0),
            FieldType::FloatVector { dim } => (D::FloatVector, dim, 0),
        };
        Self {
            name: f.name.clone(),
            data_type: data_type.into(),
            is_primary_key: f.is_primary_key,
            dim,
            max_length,
            description: f.description.clone(),
            auto_id: f.auto_id,
            is_dynamic: f.is_dynamic,
        }
    }
}

impl From<&CollectionSchema> for proto::CollectionSchema {
    fn from(s: &CollectionSchema) -> Self {
        Self {
            name: s.name.clone(),
            description: s.description.clone(),
            fields: s.fields.iter().map(Into::into).collect(),
            metric_type: proto::MetricType::from(s.metric).into(),
            index: Some(s.index.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::DataType as D;

    fn field(name: &str, ty: D) -> proto::FieldSchema {
        proto::FieldSchema {
            name: name.into(),
            data_type: ty.into(),
            ..Default::default()
        }
    }

    fn valid() -> proto::CollectionSchema {
        let mut pk = field("id", D::Int64);
        pk.is_primary_key = true;
        let mut vec = field("embedding", D::FloatVector);
        vec.dim = 128;
        let mut title = field("title", D::Varchar);
        title.max_length = 200;
        proto::CollectionSchema {
            name: "books".into(),
            description: String::new(),
            fields: vec![pk, vec, title, field("year", D::Int32)],
            metric_type: proto::MetricType::L2.into(),
            index: Some(IndexSpec::default().into()),
        }
    }

    #[test]
    fn the_index_defaults_to_hnsw_and_bad_parameters_are_named() {
        let schema = CollectionSchema::try_from(valid()).expect("valid");
        assert_eq!(
            schema.index,
            IndexSpec::Hnsw {
                m: 16,
                ef_construction: 200
            }
        );
        let wire = proto::CollectionSchema::from(&schema);
        assert_eq!(
            CollectionSchema::try_from(wire).expect("valid").index,
            schema.index
        );
        let mut flat = valid();
        flat.index = Some(IndexSpec::Flat.into());
        assert_eq!(
            CollectionSchema::try_from(flat).expect("valid").index,
            IndexSpec::Flat
        );
        let mut bad = valid();
        bad.index = Some(proto::IndexParams {
            index_type: proto::IndexType::Hnsw.into(),
            m: 1000,
            ef_construction: 0,
        });
        let e = CollectionSchema::try_from(bad).expect_err("M too large");
        assert_eq!(e.to_string(), "index: HNSW M is 1000; it must be 2 to 256");
    }

    #[test]
    fn the_metric_round_trips_and_defaults_to_l2() {
        for (raw, metric) in [
            (proto::MetricType::L2, Metric::L2),
            (proto::MetricType::Ip, Metric::InnerProduct),
            (proto::MetricType::Cosine, Metric::Cosine),
        ] {
            let mut s = valid();
            s.metric_type = raw.into();
            let schema = CollectionSchema::try_from(s.clone()).expect("valid");
            assert_eq!(schema.metric, metric);
            assert_eq!(proto::CollectionSchema::from(&schema), s);
            assert_eq!(metric.name().parse::<Metric>(), Ok(metric));
        }
        let mut old = valid();
        old.metric_type = proto::MetricType::Unspecified.into();
        assert_eq!(
            CollectionSchema::try_from(old).expect("valid").metric,
            Metric::L2,
            "schemas from before the metric are L2"
        );
        assert_eq!("Inner_Product".parse::<Metric>(), Ok(Metric::InnerProduct));
        assert_eq!(
            "hamming".parse::<Metric>(),
            Err("metric \"hamming\" is unknown; it is l2, ip or cosine".to_owned())
        );
        let mut bad = valid();
        bad.metric_type = 9;
        assert_eq!(
            CollectionSchema::try_from(bad).map(|_| ()),
            Err(SchemaError::UnknownMetric(9))
        );
    }

    #[test]
    fn a_valid_schema_round_trips() {
        let schema = CollectionSchema::try_from(valid()).expect("valid");
        assert_eq!(schema.primary_key().name, "id");
        assert_eq!(schema.vector_field().1, 128);
        assert_eq!(schema.row_bytes(), 8 + 8 + 512 + 200 + 4);
        assert_eq!(proto::CollectionSchema::from(&schema), valid());
    }

    #[test]
    fn a_varchar_primary_key_is_accepted() {
        let mut varchar = valid();
        varchar.fields[0].data_type = D::Varchar.into();
        varchar.fields[0].max_length = 64;
        let schema = CollectionSchema::try_from(varchar.clone()).expect("valid");
        assert_eq!(
            schema.primary_key().ty,
            FieldType::VarChar { max_length: 64 }
        );
        assert_eq!(proto::CollectionSchema::from(&schema), varchar);
    }

    fn refused(edit: impl FnOnce(&mut proto::CollectionSchema)) -> SchemaError {
        let mut s = valid();
        edit(&mut s);
        CollectionSchema::try_from(s).expect_err("must be refused")
    }

    #[test]
    fn malformed_schemas_are_refused_with_the_reason() {
        assert!(matches!(
            refused(|s| s.name = "9lives".into()),
            SchemaError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(|s| s.name = "a-b".into()),
            SchemaError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(|s| s.name = "x".repeat(256)),
            SchemaError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[3].name = "_ts".into()),
            SchemaError::InvalidName { what: "field", .. }
        ));
        assert_eq!(refused(|s| s.fields.clear()), SchemaError::NoFields);
        assert_eq!(
            refused(|s| s.fields[0].is_primary_key = false),
            SchemaError::NoPrimaryKey
        );
        assert_eq!(
            refused(|s| s.fields[0].data_type = D::Int32.into()),
            SchemaError::PrimaryKeyType {
                field: "id".into(),
                ty: "INT32"
            }
        );
        assert!(matches!(
            refused(|s| {
                let mut second = field("id2", D::Int64);
                second.is_primary_key = true;
                s.fields.push(second);
            }),
            SchemaError::TwoPrimaryKeys(..)
        ));
        assert_eq!(
            refused(|s| {
                s.fields.remove(1);
            }),
            SchemaError::NoVectorField
        );
        assert!(matches!(
            refused(|s| {
                let mut second = field("other", D::FloatVector);
                second.dim = 8;
                s.fields.push(second);
            }),
            SchemaError::TwoVectorFields(..)
        ));
        assert!(matches!(
            refused(|s| s.fields[1].dim = 0),
            SchemaError::BadDim { dim: 0, .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[1].dim = MAX_DIM + 1),
            SchemaError::BadDim { .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[2].max_length = 0),
            SchemaError::BadMaxLength { .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[3].dim = 4),
            SchemaError::MisplacedAttribute { attr: "dim", .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[3].data_type = 999),
            SchemaError::UnknownType { raw: 999, .. }
        ));
        assert!(matches!(
            refused(|s| s.fields[3].data_type = 0),
            SchemaError::UnknownType { raw: 0, .. }
        ));
        assert_eq!(
            refused(|s| s.fields[3].name = "title".into()),
            SchemaError::DuplicateField("title".into())
        );
        assert_eq!(
            refused(|s| s
                .fields
                .extend((0..70).map(|i| field(&format!("f{i}"), D::Bool)))),
            SchemaError::TooManyFields(74)
        );
    }

    #[test]
    fn errors_read_like_sentences() {
        let err = refused(|s| s.fields[1].dim = 0);
        assert_eq!(
            err.to_string(),
            "vector field \"embedding\" has dim 0; it must be between 1 and 32768"
        );
    }
}
