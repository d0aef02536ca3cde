//! Wall-clock formatting without a calendar crate: RFC 3339 UTC with nanoseconds, and the
//! short `HH:MM:SS.micros` form text lines use; the kernel's monotonic clock turned into
//! wall-clock time.

/// Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    /// realtime - monotonic, in nanoseconds.
    offset_ns: i128,
}

impl ClockOffset {
    /// Samples both clocks now.
    pub fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        ClockOffset {
            offset_ns: real - mono,
        }
    }

    pub fn from_offset(offset_ns: i128) -> Self {
        ClockOffset { offset_ns }
    }

    pub fn to_unix_ns(self, mono_ns: u64) -> u64 {
        let t = i128::from(mono_ns) + self.offset_ns;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

pub(crate) fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-22T10:11:12.123456789Z`
pub fn rfc3339_ns(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let nanos = ts_ns % 1_000_000_000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// `10:11:12.123456` (UTC), as tcpdump prints.
pub fn clock_us(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let sod = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        (ts_ns % 1_000_000_000) / 1000
    )
}

/// Now, as nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ns(1_234_567_800_000),
            "1970-01-01T00:20:34.567800000Z"
        );
        // 2024-02-29T23:59:59.5Z (leap day)
        assert_eq!(
            rfc3339_ns(1_709_251_199_500_000_000),
            "2024-02-29T23:59:59.500000000Z"
        );
        assert_eq!(clock_us(1_709_251_199_500_001_000), "23:59:59.500001");
    }
}
