//! Bounds on a number (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`),
//! held digit by digit: a number's text is taken only while some way to go on lands
//! in the range. Values are exact decimals, scaled by 10^[`FRACTION`] into an `i128`;
//! a bounded number is written without an exponent and with at most [`FRACTION`]
//! fraction digits (every value in range still has such a text).

/// Fraction digits a bounded number may have (and the scale of its values).
pub const FRACTION: u32 = 18;
const SCALE: i128 = 10i128.pow(FRACTION);
/// Largest bound, in magnitude.
pub const MAX_BOUND: i128 = 1_000_000_000_000_000 * SCALE;
/// Magnitudes past this are all "too large" (a register stops counting there).
const HUGE: i128 = 10i128.pow(36);

/// One bound: the value, and whether it is left out (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub at: i128,
    pub open: bool,
}

/// The values a number may take (an integer's bounds closed, on integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub lo: Option<Bound>,
    pub hi: Option<Bound>,
}

/// A bounded number's value so far: its magnitude (scaled), fraction digits read, sign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reg {
    mag: i128,
    frac: u8,
    neg: bool,
}

/// Where in its text a bounded number is (the parts of `super::Num` it may have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
}

impl Reg {
    /// After byte `b` (already known to continue the number's text), or `None` past the
    /// digits a bounded number may have.
    pub fn next(mut self, part: Part, b: u8) -> Option<Reg> {
        let d = (b.wrapping_sub(b'0')) as i128;
        match (part, b) {
            (_, b'-') => self.neg = true,
            (_, b'.') => {}
            (Part::Frac, _) => {
                if self.frac as u32 == FRACTION {
                    return None;
                }
                self.frac += 1;
                self.mag += d * 10i128.pow(FRACTION - self.frac as u32);
            }
            _ => self.mag = (self.mag.min(HUGE) * 10 + d * SCALE).min(HUGE),
        }
        Some(self)
    }

    /// The value.
    fn value(&self) -> i128 {
        if self.neg {
            -self.mag
        } else {
            self.mag
        }
    }
}

impl Range {
    /// An integer's range: its bounds closed integers (none past a bound).
    pub fn integral(self) -> Range {
        let floor = |at: i128| at.div_euclid(SCALE) * SCALE;
        Range {
            lo: self.lo.map(|b| Bound {
                at: if floor(b.at) == b.at && !b.open {
                    b.at
                } else {
                    floor(b.at) + SCALE
                },
                open: false,
            }),
            hi: self.hi.map(|b| Bound {
                at: if floor(b.at) == b.at && b.open {
                    b.at - SCALE
                } else {
                    floor(b.at)
                },
                open: false,
            }),
        }
    }

    /// Whether no value is in it.
    pub fn is_empty(&self) -> bool {
        match (self.lo, self.hi) {
            (Some(l), Some(h)) => l.at > h.at || (l.at == h.at && (l.open || h.open)),
            _ => false,
        }
    }

    /// Whether `v` is in it.
    pub fn contains(&self, v: i128) -> bool {
        self.lo.is_none_or(|l| v > l.at || (v == l.at && !l.open))
            && self.hi.is_none_or(|h| v < h.at || (v == h.at && !h.open))
    }

    /// Whether the number whose text is at `part` with value `r` may still end in the
    /// range (an integer's bounds are closed integers: its values, multiples of the
    /// scale, are then found as any value is). A minus sign leads to no zero: `-0` is
    /// never written.
    pub fn reachable(&self, integer: bool, part: Part, r: &Reg) -> bool {
        // on magnitudes: the range as the sign leaves it
        let flip = |b: Option<Bound>| {
            b.map(|b| Bound {
                at: -b.at,
                open: b.open,
            })
        };
        let (lo, hi) = if r.neg {
            (flip(self.hi), flip(self.lo))
        } else {
            (self.lo, self.hi)
        };
        // some magnitude in [a, b) (b None: unbounded; after a minus, not 0) and in
        // [lo, hi]
        let hits = |a: i128, b: Option<i128>| {
            let (a, a_closed) = match (r.neg && a == 0, integer) {
                (true, true) => (SCALE, true),
                (true, false) => (0, false),
                _ => (a, true),
            };
            let (start, closed) = match lo {
                Some(l) if l.at > a => (l.at, !l.open),
                Some(l) if l.at == a => (a, a_closed && !l.open),
                _ => (a, a_closed),
            };
            let end = match (b, hi) {
                (None, None) => return true,
                (Some(b), Some(h)) if h.at < b => (h.at, !h.open),
                (None, Some(h)) => (h.at, !h.open),
                (Some(b), _) => (b, false),
            };
            start < end.0 || (start == end.0 && closed && end.1)
        };
        let mag = r.mag;
        match part {
            Part::Minus => hits(0, None),
            Part::Zero => hits(0, Some(SCALE)),
            Part::Dot => hits(mag, Some(mag + SCALE)),
            Part::Frac => hits(mag, Some(mag + 10i128.pow(FRACTION - r.frac as u32))),
            // more digits: [mag·10^k, (mag + 1)·10^k) for some k ≥ 0
            Part::Int => {
                let Some(h) = hi else { return true };
                let mut k = 1i128;
                while mag.saturating_mul(k) <= h.at && mag < HUGE {
                    if hits(mag * k, Some((mag + SCALE).saturating_mul(k))) {
                        return true;
                    }
                    k *= 10;
                }
                false
            }
        }
    }

    /// Whether the number whose value is `r` may end here (not as `-0`).
    pub fn ends(&self, r: &Reg) -> bool {
        !(r.neg && r.mag == 0) && self.contains(r.value())
    }
}

/// A JSON number's exact value, scaled by 10^[`FRACTION`], if it has at most
/// [`FRACTION`] fraction digits and a magnitude up to [`MAX_BOUND`].
pub fn decimal(n: &serde_json::Number) -> Option<i128> {
    let t = n.to_string();
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t.as_str(), 0),
    };
    let neg = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches('-');
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    // value = digits · 10^(exp - len(frac)); scaled: · 10^FRACTION
    let shift = exp - frac.len() as i32 + FRACTION as i32;
    let digits = digits.trim_start_matches('0');
    let mut v: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if shift >= 0 {
        v = v.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        let p = 10i128.checked_pow((-shift) as u32)?;
        if v % p != 0 {
            return None;
        }
        v /= p;
    }
    (v <= MAX_BOUND).then_some(if neg { -v } else { v })
}
