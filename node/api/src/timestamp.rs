//! Hybrid timestamps: 42 bits of physical milliseconds, 22 bits of logical counter.

use std::fmt;

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 22;
/// Largest logical value within one millisecond.
pub const MAX_LOGICAL: u64 = (1 << LOGICAL_BITS) - 1;
/// Bits of the physical part (milliseconds since the Unix epoch; good until year 2109).
pub const PHYSICAL_BITS: u32 = 42;
/// Largest physical value.
pub const MAX_PHYSICAL: u64 = (1 << PHYSICAL_BITS) - 1;

/// A TSO timestamp: `physical_ms << 22 | logical`. Ordering is the `u64` ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Builds a timestamp. Returns `None` when a part does not fit its bits.
    pub fn compose(physical_ms: u64, logical: u64) -> Option<Self> {
        (physical_ms <= MAX_PHYSICAL && logical <= MAX_LOGICAL)
            .then_some(Self((physical_ms << LOGICAL_BITS) | logical))
    }

    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn physical(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub const fn logical(self) -> u64 {
        self.0 & MAX_LOGICAL
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical(), self.logical())
    }
}

impl From<Timestamp> for u64 {
    fn from(ts: Timestamp) -> u64 {
        ts.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_layout_is_42_physical_and_22_logical() {
        let ts = Timestamp::compose(1, 0).expect("fits");
        assert_eq!(ts.as_u64(), 1 << 22);
        let ts = Timestamp::compose(MAX_PHYSICAL, MAX_LOGICAL).expect("fits");
        assert_eq!(ts.as_u64(), u64::MAX);
        assert_eq!(ts.physical(), MAX_PHYSICAL);
        assert_eq!(ts.logical(), MAX_LOGICAL);
        let ts = Timestamp::compose(1_764_000_000_000, 12345).expect("fits");
        assert_eq!(ts.physical(), 1_764_000_000_000);
        assert_eq!(ts.logical(), 12345);
        assert_eq!(ts.to_string(), "1764000000000.12345");
    }

    #[test]
    fn parts_that_do_not_fit_are_refused() {
        assert!(Timestamp::compose(MAX_PHYSICAL + 1, 0).is_none());
        assert!(Timestamp::compose(0, MAX_LOGICAL + 1).is_none());
    }

    #[test]
    fn order_is_physical_then_logical() {
        let a = Timestamp::compose(10, MAX_LOGICAL).expect("fits");
        let b = Timestamp::compose(11, 0).expect("fits");
        assert!(a < b);
        assert_eq!(a.as_u64() + 1, b.as_u64());
    }

    proptest::proptest! {
        #[test]
        fn compose_round_trips(p in 0..=MAX_PHYSICAL, l in 0..=MAX_LOGICAL) {
            let ts = Timestamp::compose(p, l).expect("fits");
            proptest::prop_assert_eq!((ts.physical(), ts.logical()), (p, l));
            proptest::prop_assert_eq!(Timestamp::from_u64(ts.as_u64()), ts);
        }
    }
}
