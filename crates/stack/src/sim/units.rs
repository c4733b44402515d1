//! Parsers for the units a command line gives the simulator: durations, rates, percentages and
//! sizes. Each returns a message fit to show the user on error.
//!
//! Numbers are exact decimals (`1.5s` is exactly 1 500 000 µs; no floating-point rounding),
//! units are case-insensitive, and space between the number and the unit is allowed.

use synack_tcp::time::Duration;

/// An exact non-negative decimal: `mantissa / 10^scale`.
struct Decimal {
    mantissa: u128,
    scale: u32,
}

/// Fraction digits beyond this many are ignored (results are rounded down anyway).
const MAX_FRACTION_DIGITS: usize = 18;

/// Splits `"1.5 ms"` into `("1.5", "ms")`; the unit is lower-cased.
fn split(s: &str) -> (&str, String) {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim().to_lowercase())
}

fn parse_decimal(num: &str) -> Option<Decimal> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = &frac[..frac.len().min(MAX_FRACTION_DIGITS)];
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(b - b'0'))?;
    }
    Some(Decimal {
        mantissa,
        scale: frac.len() as u32,
    })
}

/// `floor(value × unit)`, or `None` on overflow.
fn scaled(d: &Decimal, unit: u128) -> Option<u128> {
    Some(d.mantissa.checked_mul(unit)? / 10u128.checked_pow(d.scale)?)
}

/// Parses a duration: a decimal number and an optional unit, `ns`, `us` (or `µs`), `ms`, `s`
/// (also `sec`), or `min`. A bare number is in seconds.
///
/// ```
/// use synack_stack::sim::units::parse_duration;
/// use synack_tcp::time::Duration;
///
/// assert_eq!(parse_duration("80ms"), Ok(Duration::from_millis(80)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
/// assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
/// assert!(parse_duration("-1ms").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "invalid duration {s:?}: expected a non-negative number with an optional unit \
             (ns, us, ms, s, min; a bare number is seconds), e.g. \"80ms\" or \"1.5s\""
        )
    };
    let (num, unit) = split(s);
    let d = parse_decimal(num).ok_or_else(err)?;
    let unit_ns: u128 = match unit.as_str() {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" | "sec" | "secs" => 1_000_000_000,
        "min" | "mins" => 60_000_000_000,
        _ => return Err(err()),
    };
    let ns = scaled(&d, unit_ns)
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
    Ok(Duration::from_nanos(ns))
}

/// Parses a rate in bits per second: a decimal number and an optional unit, `bit` (or `bps`,
/// or none), `kbit`, `mbit`, `gbit`, `tbit` (SI: powers of 1000). `kbps`, `mbps`, `gbps` and the
/// `/s` forms (`mbit/s`) are accepted as bits per second too, as most people write them; note
/// that Linux `tc` reads `mbps` as mega*bytes* — here it is always bits. Zero is rejected.
///
/// ```
/// use synack_stack::sim::units::parse_rate;
///
/// assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
/// assert_eq!(parse_rate("100Mbit"), Ok(100_000_000));
/// assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
/// assert_eq!(parse_rate("500kbit"), Ok(500_000));
/// assert_eq!(parse_rate("12345"), Ok(12_345));
/// ```
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid rate {s:?}: expected a positive number of bits per second with an optional \
             unit (bit, kbit, mbit, gbit, tbit), e.g. \"10mbit\" or \"500kbit\""
        )
    };
    let (num, unit) = split(s);
    let d = parse_decimal(num).ok_or_else(err)?;
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let mult: u128 = match unit {
        "" | "bit" | "bits" | "bps" => 1,
        "k" | "kbit" | "kbits" | "kbps" => 1_000,
        "m" | "mbit" | "mbits" | "mbps" => 1_000_000,
        "g" | "gbit" | "gbits" | "gbps" => 1_000_000_000,
        "t" | "tbit" | "tbits" | "tbps" => 1_000_000_000_000,
        _ => return Err(err()),
    };
    let bps = scaled(&d, mult)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("rate {s:?} is too large"))?;
    if bps == 0 {
        return Err(format!(
            "invalid rate {s:?}: must be at least 1 bit per second"
        ));
    }
    Ok(bps)
}

/// Parses a probability: a percentage (`"2%"`, `"0.5%"`) or a bare fraction (`"0.02"`). The
/// result must lie in `[0, 1]`.
///
/// ```
/// use synack_stack::sim::units::parse_percent;
///
/// assert_eq!(parse_percent("2%"), Ok(0.02));
/// assert_eq!(parse_percent("0.5%"), Ok(0.005));
/// assert_eq!(parse_percent("0.02"), Ok(0.02));
/// assert!(parse_percent("150%").is_err());
/// assert!(parse_percent("1.5").is_err());
/// ```
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = num.parse().map_err(|_| {
        format!(
            "invalid probability {s:?}: expected a percentage like \"2%\" or a fraction like \
             \"0.02\""
        )
    })?;
    let p = if percent { v / 100.0 } else { v };
    if !(0.0..=1.0).contains(&p) {
        return Err(format!(
            "invalid probability {s:?}: must be between 0 and 1 (0% and 100%)"
        ));
    }
    Ok(p)
}

/// Parses a size in bytes: a decimal number and an optional unit, `B` (or none), `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
///
/// ```
/// use synack_stack::sim::units::parse_size;
///
/// assert_eq!(parse_size("1MiB"), Ok(1 << 20));
/// assert_eq!(parse_size("64KiB"), Ok(65_536));
/// assert_eq!(parse_size("1000"), Ok(1000));
/// assert_eq!(parse_size("1MB"), Ok(1_000_000));
/// assert_eq!(parse_size("1GiB"), Ok(1 << 30));
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid size {s:?}: expected a non-negative number of bytes with an optional unit \
             (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. \"64KiB\" or \"1MB\""
        )
    };
    let (num, unit) = split(s);
    let d = parse_decimal(num).ok_or_else(err)?;
    let mult: u128 = match unit.as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    scaled(&d, mult)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("80ms"), Ok(Duration::from_millis(80)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 2 MS "), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "ms",
            ".",
            "-1ms",
            "1.2.3s",
            "5 parsecs",
            "1e3ms",
            "nan",
            "inf",
            "99999999999999999999999999999999999999999s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("12345"), Ok(12_345));
        assert_eq!(parse_rate("1.5Mbps"), Ok(1_500_000));
        assert_eq!(parse_rate("2 Gbit/s"), Ok(2_000_000_000));
        for bad in ["", "0", "0mbit", "fast", "-1mbit", "10 MiB", "1e6"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("rate"), "{bad:?}: {e}");
        }
        assert!(parse_rate("999999999999tbit")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("2%"), Ok(0.02));
        assert_eq!(parse_percent("0.5%"), Ok(0.005));
        assert_eq!(parse_percent("0.02"), Ok(0.02));
        assert_eq!(parse_percent("100%"), Ok(1.0));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert_eq!(parse_percent(" 3 % "), Ok(0.03));
        for bad in [
            "", "%", "150%", "1.5", "-1%", "-0.1", "nan", "NaN%", "inf", "x%",
        ] {
            let e = parse_percent(bad).unwrap_err();
            assert!(e.contains("probability"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5kib"), Ok(1536));
        assert_eq!(parse_size("10 B"), Ok(10));
        for bad in ["", "KiB", "1 parsec", "-5", "1k", "0x10"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("size"), "{bad:?}: {e}");
        }
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }
}
