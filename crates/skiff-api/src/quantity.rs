//! Kubernetes resource quantities (`100m`, `128Mi`, `1e3`) parsed to exact nano-units for comparison.

use std::fmt;

/// A parsed quantity, held as an exact count of 10^-9 units (fractions below that round up,
/// as Kubernetes does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Syntax,
    #[error("quantity is too large")]
    TooLarge,
}

impl Quantity {
    /// Quantity of exactly `n` whole units.
    pub fn from_units(n: i64) -> Self {
        Quantity { nanos: i128::from(n) * 1_000_000_000 }
    }

    /// Exact value in 10^-9 units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Value in milli-units, rounded up (the precision CPU requests are scheduled with).
    pub fn millis(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Value in whole units, rounded up (the precision memory is accounted in).
    pub fn units(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000_000)
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        s.parse()
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, QuantityError> {
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let mut mantissa: i128 = 0;
        let mut digits = 0usize;
        let mut frac_digits: i32 = 0;
        let mut seen_dot = false;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => {
                    mantissa = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(i128::from(bytes[i] - b'0')))
                        .ok_or(QuantityError::TooLarge)?;
                    digits += 1;
                    if seen_dot {
                        frac_digits += 1;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return Err(QuantityError::Syntax);
        }
        let suffix = &s[i..];
        let (pow2, pow10): (u32, i32) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            other if other.starts_with(['e', 'E']) => {
                let exp = &other[1..];
                let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) || body.len() > 3 {
                    return Err(QuantityError::Syntax);
                }
                (0, exp.parse::<i32>().map_err(|_| QuantityError::Syntax)?)
            }
            _ => return Err(QuantityError::Syntax),
        };
        let mut value = mantissa.checked_mul(1i128 << pow2).ok_or(QuantityError::TooLarge)?;
        let scale = 9 + pow10 - frac_digits;
        if scale >= 0 {
            let factor = 10i128.checked_pow(scale as u32).ok_or(QuantityError::TooLarge)?;
            value = value.checked_mul(factor).ok_or(QuantityError::TooLarge)?;
        } else {
            let divisor = 10i128.checked_pow((-scale) as u32);
            value = match divisor {
                Some(d) => ceil_div(value, d),
                None => i128::from(value > 0),
            };
        }
        Ok(Quantity { nanos: if negative { -value } else { value } })
    }
}

impl fmt::Display for Quantity {
    /// Canonical-ish decimal form: whole units when exact, else milli-units, else nano-units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % 1_000_000_000 == 0 {
            write!(f, "{}", self.nanos / 1_000_000_000)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(q("100m").millis(), 100);
        assert_eq!(q("1").millis(), 1000);
        assert_eq!(q("0.5").millis(), 500);
        assert_eq!(q("128Mi").units(), 128 * 1024 * 1024);
        assert_eq!(q("1Gi").units(), 1 << 30);
        assert_eq!(q("1e3").units(), 1000);
        assert_eq!(q("1E3").units(), 1000);
        assert_eq!(q("2E").units(), 2_000_000_000_000_000_000);
        assert_eq!(q("1k").units(), 1000);
        assert_eq!(q("1.5Gi").units(), 3 << 29);
        assert_eq!(q("+2").units(), 2);
        assert_eq!(q("-1").nanos(), -1_000_000_000);
        assert_eq!(q("5n").nanos(), 5);
        assert_eq!(q(".5").millis(), 500);
        assert_eq!(q("1e-3").millis(), 1);
    }

    #[test]
    fn compares_across_suffixes() {
        assert!(q("100m") < q("1"));
        assert!(q("1000m") == q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("1024Mi") == q("1Gi"));
        assert!(q("0.1") == q("100m"));
    }

    #[test]
    fn sub_nano_fractions_round_up() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1e-12").nanos(), 1);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["", "abc", "1x", "Mi", "1.2.3", "1e", "1e+", "--1", "1 Mi", "1mi", "1KiB", "1e1000"] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!("99999999999999999999999999999999999999999".parse::<Quantity>(), Err(QuantityError::TooLarge));
    }

    #[test]
    fn display() {
        assert_eq!(q("1000m").to_string(), "1");
        assert_eq!(q("250m").to_string(), "250m");
        assert_eq!(q("5n").to_string(), "5n");
        assert_eq!(Quantity::from_units(3), q("3"));
    }
}
