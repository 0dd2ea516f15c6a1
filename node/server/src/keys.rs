//! Primary keys: INT64 or VARCHAR, one kind per collection.
//!
//! Rows hold their keys in the primary key column ([`Column::Long`] or
//! [`Column::Str`]); deletes, search hits, routing and the delete logs carry
//! them as [`Keys`] (owned), [`KeysRef`] (a column borrowed) or one [`Key`].
//! Keys of the two kinds are never mixed: a batch that would mix them is refused
//! where it is built ([`KindMismatch`]).

use crate::columns::Column;
use crate::datacoord::balancer::mix64;
use crate::storage::fnv1a;

/// One primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl PartialEq<i64> for Key {
    fn eq(&self, other: &i64) -> bool {
        matches!(self, Self::Int(k) if k == other)
    }
}

/// One primary key, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRef<'a> {
    Int(i64),
    Str(&'a str),
}

impl KeyRef<'_> {
    pub fn to_owned(self) -> Key {
        match self {
            Self::Int(k) => Key::Int(k),
            Self::Str(k) => Key::Str(k.to_owned()),
        }
    }

    /// The channel (of `channels`) whose log carries the rows and deletes of
    /// this key: a hash of the key, stable across versions and processes.
    pub fn channel(self, channels: u32) -> u32 {
        let seed = match self {
            Self::Int(k) => k as u64,
            Self::Str(k) => fnv1a(k.as_bytes()),
        };
        let z = mix64(seed);
        u32::try_from(z % u64::from(channels.max(1))).unwrap_or(0)
    }
}

/// A column of primary keys, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysRef<'a> {
    Int(&'a [i64]),
    Str(&'a [String]),
}

impl<'a> KeysRef<'a> {
    /// The keys of a primary key column (none for a column of another type).
    pub fn of(column: Option<&'a Column>) -> Self {
        match column {
            Some(Column::Str(keys)) => Self::Str(keys),
            Some(Column::Long(keys)) => Self::Int(keys),
            _ => Self::Int(&[]),
        }
    }

    pub fn len(self) -> usize {
        match self {
            Self::Int(k) => k.len(),
            Self::Str(k) => k.len(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn get(self, i: usize) -> Option<KeyRef<'a>> {
        match self {
            Self::Int(k) => k.get(i).map(|k| KeyRef::Int(*k)),
            Self::Str(k) => k.get(i).map(|k| KeyRef::Str(k)),
        }
    }

    pub fn iter(self) -> impl Iterator<Item = KeyRef<'a>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// The keys at `indices`, in their order (indices out of range are skipped).
    pub fn take(self, indices: &[usize]) -> Keys {
        match self {
            Self::Int(k) => Keys::Int(indices.iter().filter_map(|&i| k.get(i).copied()).collect()),
            Self::Str(k) => Keys::Str(indices.iter().filter_map(|&i| k.get(i).cloned()).collect()),
        }
    }

    pub fn to_owned(self) -> Keys {
        match self {
            Self::Int(k) => Keys::Int(k.to_vec()),
            Self::Str(k) => Keys::Str(k.to_vec()),
        }
    }
}

impl<'a> From<&'a [i64]> for KeysRef<'a> {
    fn from(k: &'a [i64]) -> Self {
        Self::Int(k)
    }
}

impl<'a> From<&'a Vec<i64>> for KeysRef<'a> {
    fn from(k: &'a Vec<i64>) -> Self {
        Self::Int(k)
    }
}

impl<'a, const N: usize> From<&'a [i64; N]> for KeysRef<'a> {
    fn from(k: &'a [i64; N]) -> Self {
        Self::Int(k)
    }
}

impl<'a> From<&'a [String]> for KeysRef<'a> {
    fn from(k: &'a [String]) -> Self {
        Self::Str(k)
    }
}

impl<'a> From<&'a Keys> for KeysRef<'a> {
    fn from(k: &'a Keys) -> Self {
        k.as_ref()
    }
}

/// A column of primary keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Default for Keys {
    fn default() -> Self {
        Self::Int(Vec::new())
    }
}

/// Keys of both kinds where one kind was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("INT64 and VARCHAR primary keys mixed; a collection's keys are of one kind")]
pub struct KindMismatch;

impl Keys {
    pub fn as_ref(&self) -> KeysRef<'_> {
        match self {
            Self::Int(k) => KeysRef::Int(k),
            Self::Str(k) => KeysRef::Str(k),
        }
    }

    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys from the two wire lists of a message (at most one of them not
    /// empty).
    pub fn from_wire(ints: Vec<i64>, strings: Vec<String>) -> Result<Self, KindMismatch> {
        match (ints.is_empty(), strings.is_empty()) {
            (_, true) => Ok(Self::Int(ints)),
            (true, false) => Ok(Self::Str(strings)),
            (false, false) => Err(KindMismatch),
        }
    }

    /// The two wire lists of a message: (INT64 keys, VARCHAR keys).
    pub fn into_wire(self) -> (Vec<i64>, Vec<String>) {
        match self {
            Self::Int(k) => (k, Vec::new()),
            Self::Str(k) => (Vec::new(), k),
        }
    }

    /// Appends `other`; an empty side takes the other's kind.
    pub fn extend(&mut self, other: Keys) -> Result<(), KindMismatch> {
        match (&mut *self, other) {
            (Self::Int(a), Self::Int(b)) => a.extend(b),
            (Self::Str(a), Self::Str(b)) => a.extend(b),
            (_, other) if other.is_empty() => {}
            (me, other) if me.is_empty() => *me = other,
            _ => return Err(KindMismatch),
        }
        Ok(())
    }

    /// Bytes held (capacity, strings' heap included).
    pub fn byte_size(&self) -> usize {
        match self {
            Self::Int(k) => k.capacity() * 8,
            Self::Str(k) => {
                k.capacity() * std::mem::size_of::<String>()
                    + k.iter().map(String::capacity).sum::<usize>()
            }
        }
    }
}

/// Keys for the two wire lists of a message, (INT64 keys, VARCHAR keys), in
/// order within each.
pub fn to_wire<'a>(keys: impl IntoIterator<Item = &'a Key>) -> (Vec<i64>, Vec<String>) {
    let mut ints = Vec::new();
    let mut strings = Vec::new();
    for key in keys {
        match key {
            Key::Int(k) => ints.push(*k),
            Key::Str(k) => strings.push(k.clone()),
        }
    }
    (ints, strings)
}

/// The keys of the two wire lists of a message, one by one (at most one of
/// the lists not empty).
pub fn from_wire(ints: Vec<i64>, strings: Vec<String>) -> Result<Vec<Key>, KindMismatch> {
    Ok(match Keys::from_wire(ints, strings)? {
        Keys::Int(k) => k.into_iter().map(Key::Int).collect(),
        Keys::Str(k) => k.into_iter().map(Key::Str).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_kind_only() {
        let mut keys = Keys::default();
        keys.extend(Keys::Str(vec!["a".into()]))
            .expect("empty takes any kind");
        keys.extend(Keys::Int(Vec::new())).expect("nothing added");
        assert_eq!(keys.extend(Keys::Int(vec![1])), Err(KindMismatch));
        assert_eq!(
            Keys::from_wire(vec![1], vec!["a".into()]),
            Err(KindMismatch)
        );
        assert_eq!(
            from_wire(vec![], vec!["b".into(), "a".into()]),
            Ok(vec![Key::Str("b".into()), Key::Str("a".into())])
        );
        assert_eq!(
            to_wire(&[Key::Int(2), Key::Int(1)]),
            (vec![2, 1], Vec::new())
        );
        assert_eq!(Keys::from_wire(vec![], vec![]), Ok(Keys::Int(vec![])));
    }

    #[test]
    fn channels_spread_both_kinds_and_stay_put() {
        let mut ints = [0u32; 4];
        let mut strs = [0u32; 4];
        for i in 0..4000i64 {
            ints[KeyRef::Int(i).channel(4) as usize] += 1;
            strs[KeyRef::Str(&format!("doc-{i}")).channel(4) as usize] += 1;
        }
        for n in ints.iter().chain(&strs) {
            assert!((800..1200).contains(n), "{ints:?} {strs:?}");
        }
        // The routing is part of the log's contract (rows and deletes of a
        // key meet on one channel, across upgrades): these values are fixed.
        let ints = [0, 1, 42, -7].map(|k| KeyRef::Int(k).channel(16));
        assert_eq!(ints, [15, 1, 5, 0]);
        let strs = ["a", "", "doc-1", "ünï"].map(|k| KeyRef::Str(k).channel(1000));
        assert_eq!(strs, [583, 8, 277, 721]);
        assert_eq!(KeyRef::Str("x").channel(1), 0);
        assert_eq!(KeyRef::Int(3).channel(0), 0, "no channels: as one");
    }
}
