//! The site's rules where the documentation is silent (`shotgun-api.md` §4.3, §5.5, §11), as
//! learned by calibration (see `actors::calibrator`).
//!
//! Each [`Rule`] has a few candidate [`RuleValue`]s. A rule is either decided (one value, with
//! the evidence of the probe that decided it) or undecided. The read compiler asks for a rule
//! only where the answer depends on it (see [`super::filters::Compiler::rule`]); a read whose
//! answer depends on an undecided rule is passed through with reason `uncalibrated`.
use std::collections::BTreeMap;
use std::fmt;

use chrono::Weekday;
use serde::Serialize;

/// An unknown rule of the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Where NULLs go in an ascending sort.
    NullsAscending,
    /// Where NULLs go in a descending sort.
    NullsDescending,
    /// How text kinds and link names sort (case, and the tie-break of case variants).
    TextOrder,
    /// Whether a filter path through a multi-entity field that reaches no entity yields a NULL.
    EmptyMultiPath,
    /// What `in` / `not_in` with an empty list do.
    EmptyIn,
    /// The zone of calendar periods and of a date's midnight.
    TimeZone,
    /// The first day of the week of `in_calendar_week`.
    WeekStart,
}

/// Where NULLs sort in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullsAt {
    First,
    Last,
}

/// How text kinds sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrder {
    /// Case-insensitive; case variants tie (the next sort key, then `id`, decides).
    CaseInsensitive,
    /// Case-insensitive; case variants ordered by code point.
    CaseInsensitiveThenCodePoint,
    /// Code-point order.
    CodePoint,
}

/// What a path through a multi-entity field that reaches no entity yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyPath {
    /// One NULL (`assets.Asset.code is null` matches a Shot without assets).
    NullValue,
    /// No value (that filter does not match; its negation does).
    NoValue,
}

/// What `in` / `not_in` with an empty list do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyIn {
    /// `in []` matches nothing, `not_in []` everything.
    MatchNone,
    /// The condition is ignored.
    Ignored,
    /// The site answers a fault.
    Fault,
}

/// One candidate value of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleValue {
    NullsAscending(NullsAt),
    NullsDescending(NullsAt),
    TextOrder(TextOrder),
    EmptyMultiPath(EmptyPath),
    EmptyIn(EmptyIn),
    /// Minutes east of UTC.
    TimeZone(i32),
    WeekStart(Weekday),
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::NullsAscending,
        Rule::NullsDescending,
        Rule::TextOrder,
        Rule::EmptyMultiPath,
        Rule::EmptyIn,
        Rule::TimeZone,
        Rule::WeekStart,
    ];

    /// The stable name (database, `/status`, explain).
    pub fn key(self) -> &'static str {
        match self {
            Rule::NullsAscending => "nulls_ascending",
            Rule::NullsDescending => "nulls_descending",
            Rule::TextOrder => "text_order",
            Rule::EmptyMultiPath => "empty_multi_entity_path",
            Rule::EmptyIn => "empty_in_list",
            Rule::TimeZone => "time_zone",
            Rule::WeekStart => "week_start",
        }
    }

    pub fn from_key(key: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Which reads depend on the rule.
    pub fn affects(self) -> &'static str {
        match self {
            Rule::NullsAscending => "ascending sorts on any field but id",
            Rule::NullsDescending => "descending sorts on any field but id",
            Rule::TextOrder => "sorts on text fields and on links (by display name)",
            Rule::EmptyMultiPath => {
                "filters through a multi_entity field that accept null (is null, in [.., null], \
                 type_is null) and their negations"
            }
            Rule::EmptyIn => "in / not_in with an empty list",
            Rule::TimeZone => "in_calendar_* filters, and in_last / in_next on date fields",
            Rule::WeekStart => "in_calendar_week filters",
        }
    }

    /// Every candidate value, in a fixed order.
    pub fn candidates(self) -> Vec<RuleValue> {
        use RuleValue as V;
        match self {
            Rule::NullsAscending => vec![
                V::NullsAscending(NullsAt::First),
                V::NullsAscending(NullsAt::Last),
            ],
            Rule::NullsDescending => {
                vec![
                    V::NullsDescending(NullsAt::First),
                    V::NullsDescending(NullsAt::Last),
                ]
            }
            Rule::TextOrder => vec![
                V::TextOrder(TextOrder::CaseInsensitive),
                V::TextOrder(TextOrder::CaseInsensitiveThenCodePoint),
                V::TextOrder(TextOrder::CodePoint),
            ],
            Rule::EmptyMultiPath => vec![
                V::EmptyMultiPath(EmptyPath::NullValue),
                V::EmptyMultiPath(EmptyPath::NoValue),
            ],
            Rule::EmptyIn => vec![
                V::EmptyIn(EmptyIn::MatchNone),
                V::EmptyIn(EmptyIn::Ignored),
                V::EmptyIn(EmptyIn::Fault),
            ],
            // Whole hours: offsets a day apart cannot be told apart by relative filters alone.
            Rule::TimeZone => (-12..=14).map(|h| V::TimeZone(h * 60)).collect(),
            Rule::WeekStart => vec![
                V::WeekStart(Weekday::Mon),
                V::WeekStart(Weekday::Sun),
                V::WeekStart(Weekday::Sat),
            ],
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl RuleValue {
    pub fn rule(self) -> Rule {
        match self {
            RuleValue::NullsAscending(_) => Rule::NullsAscending,
            RuleValue::NullsDescending(_) => Rule::NullsDescending,
            RuleValue::TextOrder(_) => Rule::TextOrder,
            RuleValue::EmptyMultiPath(_) => Rule::EmptyMultiPath,
            RuleValue::EmptyIn(_) => Rule::EmptyIn,
            RuleValue::TimeZone(_) => Rule::TimeZone,
            RuleValue::WeekStart(_) => Rule::WeekStart,
        }
    }

    /// The stable spelling (`first`, `code_point`, `+05:00`, `sunday`, ...).
    pub fn label(self) -> String {
        let s = match self {
            RuleValue::NullsAscending(n) | RuleValue::NullsDescending(n) => match n {
                NullsAt::First => "first",
                NullsAt::Last => "last",
            },
            RuleValue::TextOrder(TextOrder::CaseInsensitive) => "case_insensitive",
            RuleValue::TextOrder(TextOrder::CaseInsensitiveThenCodePoint) => {
                "case_insensitive_then_code_point"
            }
            RuleValue::TextOrder(TextOrder::CodePoint) => "code_point",
            RuleValue::EmptyMultiPath(EmptyPath::NullValue) => "null_value",
            RuleValue::EmptyMultiPath(EmptyPath::NoValue) => "no_value",
            RuleValue::EmptyIn(EmptyIn::MatchNone) => "match_none",
            RuleValue::EmptyIn(EmptyIn::Ignored) => "ignored",
            RuleValue::EmptyIn(EmptyIn::Fault) => "fault",
            RuleValue::TimeZone(m) => {
                let sign = if m < 0 { '-' } else { '+' };
                return format!("{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60);
            }
            RuleValue::WeekStart(d) => match d {
                Weekday::Mon => "monday",
                Weekday::Tue => "tuesday",
                Weekday::Wed => "wednesday",
                Weekday::Thu => "thursday",
                Weekday::Fri => "friday",
                Weekday::Sat => "saturday",
                Weekday::Sun => "sunday",
            },
        };
        s.to_owned()
    }

    /// The candidate of `rule` spelled `label`.
    pub fn parse(rule: Rule, label: &str) -> Option<RuleValue> {
        rule.candidates().into_iter().find(|v| v.label() == label)
    }
}

impl fmt::Display for RuleValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// What a probe run found out about one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// When the probes ran (wire format, UTC).
    pub probed_at: String,
    /// Requests sent to the site for this rule.
    pub requests: u32,
    /// What the probes showed, in words (the candidates left, or why nothing was decided).
    pub detail: String,
}

/// The state of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleState {
    Decided {
        value: RuleValue,
        evidence: Evidence,
    },
    /// Never decided; `evidence` tells about the last attempt, if any.
    Undecided { evidence: Option<Evidence> },
}

impl RuleState {
    pub fn value(&self) -> Option<RuleValue> {
        match self {
            RuleState::Decided { value, .. } => Some(*value),
            RuleState::Undecided { .. } => None,
        }
    }

    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            RuleState::Decided { evidence, .. } => Some(evidence),
            RuleState::Undecided { evidence } => evidence.as_ref(),
        }
    }

    /// `decided` or `undecided`.
    pub fn label(&self) -> &'static str {
        match self {
            RuleState::Decided { .. } => "decided",
            RuleState::Undecided { .. } => "undecided",
        }
    }
}

/// The state of every rule (a rule not listed is undecided).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    states: BTreeMap<Rule, RuleState>,
}

const UNDECIDED: RuleState = RuleState::Undecided { evidence: None };

impl Rules {
    /// Every rule decided as the values the compiler assumed before calibration existed (the
    /// mock site's default semantics too). For tests, benchmarks and tools.
    pub fn assumed() -> Rules {
        Rules::decided(&[
            RuleValue::NullsAscending(NullsAt::First),
            RuleValue::NullsDescending(NullsAt::Last),
            RuleValue::TextOrder(TextOrder::CaseInsensitive),
            RuleValue::EmptyMultiPath(EmptyPath::NullValue),
            RuleValue::EmptyIn(EmptyIn::MatchNone),
            RuleValue::TimeZone(0),
            RuleValue::WeekStart(Weekday::Mon),
        ])
    }

    /// The given values decided (without probe evidence); the other rules undecided.
    pub fn decided(values: &[RuleValue]) -> Rules {
        let mut rules = Rules::default();
        for v in values {
            rules = rules.with(*v);
        }
        rules
    }

    /// Every decided value.
    pub fn values(&self) -> Vec<RuleValue> {
        self.states.values().filter_map(RuleState::value).collect()
    }

    /// The decided rules as `calibration.pinned` spells them (`rule`, `value`).
    pub fn pinned(&self) -> Vec<(String, String)> {
        self.states
            .iter()
            .filter_map(|(r, s)| Some((r.key().to_owned(), s.value()?.label())))
            .collect()
    }

    pub fn state(&self, rule: Rule) -> &RuleState {
        self.states.get(&rule).unwrap_or(&UNDECIDED)
    }

    pub fn value(&self, rule: Rule) -> Option<RuleValue> {
        self.state(rule).value()
    }

    pub fn set(&mut self, rule: Rule, state: RuleState) {
        self.states.insert(rule, state);
    }

    /// A copy with `value` decided (a candidate, while probing).
    pub fn with(&self, value: RuleValue) -> Rules {
        let mut out = self.clone();
        out.set(
            value.rule(),
            RuleState::Decided {
                value,
                evidence: Evidence {
                    probed_at: String::new(),
                    requests: 0,
                    detail: "assumed".into(),
                },
            },
        );
        out
    }

    pub fn nulls(&self, descending: bool) -> Option<NullsAt> {
        match self.value(if descending {
            Rule::NullsDescending
        } else {
            Rule::NullsAscending
        }) {
            Some(RuleValue::NullsAscending(n) | RuleValue::NullsDescending(n)) => Some(n),
            _ => None,
        }
    }

    pub fn text_order(&self) -> Option<TextOrder> {
        match self.value(Rule::TextOrder) {
            Some(RuleValue::TextOrder(t)) => Some(t),
            _ => None,
        }
    }

    pub fn empty_multi_path(&self) -> Option<EmptyPath> {
        match self.value(Rule::EmptyMultiPath) {
            Some(RuleValue::EmptyMultiPath(p)) => Some(p),
            _ => None,
        }
    }

    pub fn empty_in(&self) -> Option<EmptyIn> {
        match self.value(Rule::EmptyIn) {
            Some(RuleValue::EmptyIn(e)) => Some(e),
            _ => None,
        }
    }

    /// Minutes east of UTC.
    pub fn utc_offset(&self) -> Option<i32> {
        match self.value(Rule::TimeZone) {
            Some(RuleValue::TimeZone(m)) => Some(m),
            _ => None,
        }
    }

    pub fn week_start(&self) -> Option<Weekday> {
        match self.value(Rule::WeekStart) {
            Some(RuleValue::WeekStart(d)) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_key(rule.key()), Some(rule));
            for v in rule.candidates() {
                assert_eq!(v.rule(), rule);
                assert_eq!(RuleValue::parse(rule, &v.label()), Some(v), "{v:?}");
            }
        }
        assert_eq!(RuleValue::TimeZone(-300).label(), "-05:00");
        assert_eq!(RuleValue::TimeZone(0).label(), "+00:00");
        assert_eq!(RuleValue::parse(Rule::TimeZone, "+05:30"), None);
        assert_eq!(Rule::TimeZone.candidates().len(), 27);
    }

    #[test]
    fn states() {
        let rules = Rules::default();
        assert_eq!(rules.state(Rule::TextOrder).label(), "undecided");
        assert_eq!(rules.text_order(), None);
        let rules = rules.with(RuleValue::TextOrder(TextOrder::CodePoint));
        assert_eq!(rules.text_order(), Some(TextOrder::CodePoint));
        assert_eq!(rules.nulls(false), None);
        let all = Rules::assumed();
        for rule in Rule::ALL {
            assert!(all.value(rule).is_some(), "{rule}");
        }
        assert_eq!(all.nulls(true), Some(NullsAt::Last));
        assert_eq!(all.utc_offset(), Some(0));
        assert_eq!(all.week_start(), Some(Weekday::Mon));
    }
}
