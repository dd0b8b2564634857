//! Token budgets as the config states them (`[ai.budgets]`), and the
//! calendar their periods follow: windows aligned in UTC, a day from
//! 00:00, a month from the 1st. Counting against them is the AI gateway's
//! (`ai::budget`).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

const MINUTE_MS: i64 = 60_000;
/// An hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// A day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// How long a token budget lasts before it starts again.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From second 0 of each minute.
    Minute,
    /// From minute 0 of each hour.
    Hour,
    /// From 00:00 UTC.
    #[default]
    Day,
    /// From 00:00 UTC on the 1st.
    Month,
}

impl Period {
    /// Where the window holding `now_ms` starts (Unix ms).
    pub fn window_start_ms(self, now_ms: i64) -> i64 {
        match self {
            Period::Minute => now_ms - now_ms.rem_euclid(MINUTE_MS),
            Period::Hour => now_ms - now_ms.rem_euclid(HOUR_MS),
            Period::Day => now_ms - now_ms.rem_euclid(DAY_MS),
            Period::Month => {
                let (year, month, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }

    /// Where the window holding `now_ms` ends, which is where the next starts.
    pub fn window_end_ms(self, now_ms: i64) -> i64 {
        let start = self.window_start_ms(now_ms);
        match self {
            Period::Minute => start + MINUTE_MS,
            Period::Hour => start + HOUR_MS,
            Period::Day => start + DAY_MS,
            Period::Month => {
                let (year, month, _) = civil_from_days(start.div_euclid(DAY_MS));
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        })
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1–12, day 1–31) that is `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: month 1..=12, day 1..=31.
    (year, month as u32, day as u32)
}

/// The limits of one consumer. A rule that sets neither `tokens` nor
/// `tokens_per_minute` makes the consumer unlimited (useful to exempt one
/// consumer from the default).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetRule {
    /// Tokens (prompt plus completion) allowed per period.
    pub tokens: Option<u64>,
    /// The budget's period; `day` when unset.
    pub period: Option<Period>,
    /// Tokens allowed in any rolling 60 s.
    pub tokens_per_minute: Option<u64>,
}

impl BudgetRule {
    /// Whether the rule limits anything (an empty rule exempts a consumer).
    pub fn limits_anything(&self) -> bool {
        self.tokens.is_some() || self.tokens_per_minute.is_some()
    }
}

/// Budgets for every consumer.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// For consumers not listed, and for requests without a consumer
    /// (counted together as consumer `-`).
    pub default: Option<BudgetRule>,
    /// Rules by consumer name.
    #[serde(default)]
    pub consumers: HashMap<String, BudgetRule>,
}

impl BudgetConfig {
    /// Every problem in the config, each with its path below the budgets
    /// section (`consumers.alice.period`).
    pub fn validate(&self) -> Vec<String> {
        let mut names: Vec<&String> = self.consumers.keys().collect();
        names.sort();
        let rules = self.default.iter().map(|rule| ("default".to_owned(), rule)).chain(
            names
                .into_iter()
                .map(|name| (format!("consumers.{name}"), &self.consumers[name])),
        );
        rules
            .filter(|(_, rule)| rule.period.is_some() && rule.tokens.is_none())
            .map(|(path, _)| format!("{path}.period: a period needs `tokens` to say the budget"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-02-15T12:00:00Z.
    const FEB_15_NOON: i64 = 1_771_156_800_000;

    fn ms(year: i64, month: u32, day: u32) -> i64 {
        days_from_civil(year, month, day) * DAY_MS
    }

    #[test]
    fn calendar_arithmetic_matches_known_dates() {
        assert_eq!(ms(1970, 1, 1), 0);
        assert_eq!(ms(2026, 2, 1), 1_769_904_000_000);
        assert_eq!(ms(2026, 3, 1), 1_772_323_200_000);
        assert_eq!(ms(2026, 2, 15) + 12 * HOUR_MS, FEB_15_NOON);
        assert_eq!(civil_from_days(ms(2024, 2, 29) / DAY_MS), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in [-800_000, -1, 0, 59, 11_016, 20_500, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn windows_are_calendar_aligned_in_utc() {
        let now = FEB_15_NOON + 17 * MINUTE_MS + 42_123;
        assert_eq!(Period::Minute.window_start_ms(now), FEB_15_NOON + 17 * MINUTE_MS);
        assert_eq!(Period::Hour.window_start_ms(now), FEB_15_NOON);
        assert_eq!(Period::Hour.window_end_ms(now), FEB_15_NOON + HOUR_MS);
        assert_eq!(Period::Day.window_start_ms(now), ms(2026, 2, 15));
        assert_eq!(Period::Day.window_end_ms(now), ms(2026, 2, 16));
        assert_eq!(Period::Month.window_start_ms(now), ms(2026, 2, 1));
        assert_eq!(Period::Month.window_end_ms(now), ms(2026, 3, 1));
        assert_eq!(Period::Month.window_end_ms(ms(2026, 12, 31)), ms(2027, 1, 1));
        assert_eq!(Period::Month.window_start_ms(ms(2026, 3, 1)), ms(2026, 3, 1));
        assert_eq!(Period::Month.window_start_ms(ms(2026, 3, 1) - 1), ms(2026, 2, 1));
    }
}
