//! The scenario file of `convoy simulate --scenario FILE`: a weighted mix of conversation
//! shapes with their timings and receipt behaviour, read from TOML and validated with
//! errors that name the offending key. Plain data; [`super::plan`] turns it into a plan.
//!
//! ```toml
//! name = "mixed"
//!
//! [agents]                       # synthetic agents (emulator only)
//! answer_after_ms = [100, 400]   # a number, or [min, max] drawn uniformly
//! reply_after_ms = [100, 300]
//! wrapup_after_ms = 100
//!
//! [customer]
//! message_gap_ms = [20, 80]      # between consecutive customer messages
//!
//! [receipts]                     # for every outbound message
//! delivered_after_ms = [50, 300]
//! read_after_ms = [100, 900]     # counted from the Delivered receipt
//! read_share = 0.7               # of delivered messages, the share later read
//! never_share = 0.1              # no receipt at all
//! failed_share = 0.05            # a Failed receipt
//! failed_after_ms = [50, 200]
//!
//! [[shapes]]
//! name = "inbound-answered"
//! kind = "inbound"               # inbound | agentless
//! weight = 6
//! outcome = "answered"           # answered | abandon | transfer
//! customer_messages = [1, 3]
//! agent_replies = [1, 2]
//! attachment_share = 0.2         # share of customer messages carrying an attachment
//!
//! [[shapes]]
//! name = "notice"
//! kind = "agentless"
//! weight = 2
//! messages = 1
//!
//! [[shapes]]
//! name = "call"
//! kind = "voice"                 # emulator only; outcome, agent_replies (talk turns of
//! weight = 1                     # two transcribed utterances), [shapes.agents]
//! agent_replies = 2
//! ```
//! A shape may carry its own `[shapes.agents]` / `[shapes.receipts]` tables; they replace the
//! top-level ones for that shape.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A whole number, fixed (`5`) or drawn uniformly from an inclusive range (`[1, 3]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    Fixed(u64),
    Range([u64; 2]),
}

impl Span {
    pub fn min(&self) -> u64 {
        match *self {
            Span::Fixed(value) => value,
            Span::Range([min, _]) => min,
        }
    }

    pub fn max(&self) -> u64 {
        match *self {
            Span::Fixed(value) => value,
            Span::Range([_, max]) => max,
        }
    }
}

/// How a conversation comes about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    /// The customer writes through open messaging; the conversation is routed to an agent.
    Inbound,
    /// The business sends agentless outbound messages; no agent, no routing.
    Agentless,
    /// The customer calls the queue; the call is routed to an agent and transcribed in
    /// real time (`v2.conversations.{id}.transcription`), two utterances per agent turn.
    /// Emulator only: a call is placed through `POST /emulator/v1/conversations/voice`
    /// (Genesys has no API that places an inbound call from outside).
    Voice,
}

/// How the routing of an inbound conversation ends (the emulator's `convoy.sim.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent answers, replies, wraps up.
    Answered,
    /// The customer leaves before an agent answers.
    Abandon,
    /// The first agent transfers to a second agent.
    Transfer,
}

impl Outcome {
    /// The value of the emulator's `convoy.sim.outcome` metadata key.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandon => "abandon",
            Outcome::Transfer => "transfer",
        }
    }
}

/// Timings of the emulator's synthetic agents. Real orgs ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentTimings {
    /// From the first customer message to the agent connecting.
    pub answer_after_ms: Span,
    /// Between agent replies (the first counted from answering).
    pub reply_after_ms: Span,
    /// From the last reply to the agent disconnecting with a wrap-up.
    pub wrapup_after_ms: Span,
}

impl Default for AgentTimings {
    fn default() -> Self {
        AgentTimings {
            answer_after_ms: Span::Range([100, 300]),
            reply_after_ms: Span::Range([100, 300]),
            wrapup_after_ms: Span::Fixed(100),
        }
    }
}

/// How the simulated customer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerBehaviour {
    /// Between consecutive customer messages of one conversation. All customer messages are
    /// sent before the agent answers (the plan compresses the gaps to fit).
    pub message_gap_ms: Span,
}

impl Default for CustomerBehaviour {
    fn default() -> Self {
        CustomerBehaviour {
            message_gap_ms: Span::Range([10, 50]),
        }
    }
}

/// What the customer's messaging platform reports for each outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptBehaviour {
    /// From the message being sent to its `Delivered` receipt.
    pub delivered_after_ms: Span,
    /// From the `Delivered` receipt to the `Read` receipt.
    pub read_after_ms: Span,
    /// Of the delivered messages, the share that is later read.
    pub read_share: f64,
    /// Share of outbound messages that never get any receipt.
    pub never_share: f64,
    /// Share of outbound messages that get a `Failed` receipt.
    pub failed_share: f64,
    /// From the message being sent to its `Failed` receipt.
    pub failed_after_ms: Span,
}

impl Default for ReceiptBehaviour {
    fn default() -> Self {
        ReceiptBehaviour {
            delivered_after_ms: Span::Range([20, 200]),
            read_after_ms: Span::Range([50, 500]),
            read_share: 0.7,
            never_share: 0.1,
            failed_share: 0.05,
            failed_after_ms: Span::Range([20, 200]),
        }
    }
}

/// One conversation shape of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub name: String,
    pub kind: ShapeKind,
    /// Relative weight in the mix; shapes with weight 0 never occur.
    pub weight: u32,
    /// Inbound only (default `answered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Inbound only (default 1): messages the customer sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_messages: Option<Span>,
    /// Inbound only (default 1; must be absent or 0 with `abandon`): agent replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_replies: Option<Span>,
    /// Inbound only (default 0): share of customer messages that carry an attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_share: Option<f64>,
    /// Agentless only (default 1): outbound messages sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Span>,
    /// Agentless only (default 0 ms): between consecutive agentless messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_gap_ms: Option<Span>,
    /// Replaces the scenario's `[agents]` for this shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentTimings>,
    /// Replaces the scenario's `[receipts]` for this shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<ReceiptBehaviour>,
}

impl Shape {
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Answered)
    }
}

/// A validated scenario. Build with [`Scenario::from_toml`] or [`Scenario::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub agents: AgentTimings,
    #[serde(default)]
    pub customer: CustomerBehaviour,
    #[serde(default)]
    pub receipts: ReceiptBehaviour,
    pub shapes: Vec<Shape>,
}

impl Default for Scenario {
    /// A quick mix for tests and first runs: mostly answered inbound conversations, some
    /// with attachments, a few transfers and abandons, some agentless notices; timings in
    /// the hundreds of milliseconds.
    fn default() -> Self {
        let inbound = |name: &str, weight, outcome, replies| Shape {
            name: name.to_owned(),
            kind: ShapeKind::Inbound,
            weight,
            outcome: Some(outcome),
            customer_messages: Some(Span::Range([1, 2])),
            agent_replies: replies,
            attachment_share: None,
            messages: None,
            message_gap_ms: None,
            agents: None,
            receipts: None,
        };
        let mut with_attachment = inbound(
            "inbound-attachment",
            2,
            Outcome::Answered,
            Some(Span::Fixed(1)),
        );
        with_attachment.attachment_share = Some(1.0);
        Scenario {
            name: Some("default".to_owned()),
            agents: AgentTimings::default(),
            customer: CustomerBehaviour::default(),
            receipts: ReceiptBehaviour::default(),
            shapes: vec![
                inbound(
                    "inbound-answered",
                    10,
                    Outcome::Answered,
                    Some(Span::Range([1, 2])),
                ),
                with_attachment,
                inbound(
                    "inbound-transfer",
                    2,
                    Outcome::Transfer,
                    Some(Span::Fixed(1)),
                ),
                inbound("inbound-abandon", 2, Outcome::Abandon, None),
                Shape {
                    name: "agentless-notice".to_owned(),
                    kind: ShapeKind::Agentless,
                    weight: 3,
                    outcome: None,
                    customer_messages: None,
                    agent_replies: None,
                    attachment_share: None,
                    messages: Some(Span::Fixed(1)),
                    message_gap_ms: None,
                    agents: None,
                    receipts: None,
                },
            ],
        }
    }
}

/// One problem found while validating a scenario, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `shapes[2].weight`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a scenario cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or not the scenario shape (unknown key, wrong type); the message names the
    /// line and column.
    #[error("scenario is not valid TOML of the scenario format: {0}")]
    Syntax(String),
    /// Well-formed but inconsistent; every problem found is listed.
    #[error("invalid scenario: {}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Scenario {
    /// Reads and validates a scenario file's text.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|error| ScenarioError::Syntax(error.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks everything the plan relies on: at least one shape with weight, unique shape
    /// names, ranges with min ≤ max, shares within 0..=1 (never + failed ≤ 1), and per-kind
    /// keys only where they mean something.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: &str| {
            problems.push(Problem {
                path,
                message: message.to_owned(),
            })
        };
        if self.shapes.is_empty() {
            problem("shapes".into(), "at least one [[shapes]] entry is required");
        } else if self.shapes.iter().all(|shape| shape.weight == 0) {
            problem("shapes".into(), "at least one shape needs a weight above 0");
        }
        check_agents("agents", &self.agents, &mut problem);
        check_span(
            "customer.message_gap_ms",
            self.customer.message_gap_ms,
            &mut problem,
        );
        check_receipts("receipts", &self.receipts, &mut problem);
        for (index, shape) in self.shapes.iter().enumerate() {
            let at = |key: &str| format!("shapes[{index}].{key}");
            if shape.name.trim().is_empty() {
                problem(at("name"), "must not be empty");
            }
            if self.shapes[..index]
                .iter()
                .any(|earlier| earlier.name == shape.name)
            {
                problem(at("name"), "duplicate shape name");
            }
            match shape.kind {
                ShapeKind::Inbound => {
                    for (key, present) in [
                        ("messages", shape.messages.is_some()),
                        ("message_gap_ms", shape.message_gap_ms.is_some()),
                    ] {
                        if present {
                            problem(at(key), "only agentless shapes take this key");
                        }
                    }
                    if let Some(span) = shape.customer_messages {
                        check_span(&at("customer_messages"), span, &mut problem);
                        if span.min() == 0 {
                            problem(
                                at("customer_messages"),
                                "an inbound conversation starts with a customer message: minimum is 1",
                            );
                        }
                    }
                    if let Some(span) = shape.agent_replies {
                        check_span(&at("agent_replies"), span, &mut problem);
                        if shape.outcome() == Outcome::Abandon && span.max() > 0 {
                            problem(
                                at("agent_replies"),
                                "an abandoned conversation has no agent replies",
                            );
                        }
                    }
                    if let Some(share) = shape.attachment_share {
                        check_share(&at("attachment_share"), share, &mut problem);
                    }
                }
                ShapeKind::Voice => {
                    for (key, present) in [
                        ("customer_messages", shape.customer_messages.is_some()),
                        ("attachment_share", shape.attachment_share.is_some()),
                        ("messages", shape.messages.is_some()),
                        ("message_gap_ms", shape.message_gap_ms.is_some()),
                        ("receipts", shape.receipts.is_some()),
                    ] {
                        if present {
                            problem(at(key), "voice shapes do not take this key");
                        }
                    }
                    if let Some(span) = shape.agent_replies {
                        check_span(&at("agent_replies"), span, &mut problem);
                        if shape.outcome() == Outcome::Abandon && span.max() > 0 {
                            problem(at("agent_replies"), "an abandoned call has no agent turns");
                        }
                    }
                }
                ShapeKind::Agentless => {
                    for (key, present) in [
                        ("outcome", shape.outcome.is_some()),
                        ("customer_messages", shape.customer_messages.is_some()),
                        ("agent_replies", shape.agent_replies.is_some()),
                        ("attachment_share", shape.attachment_share.is_some()),
                        ("agents", shape.agents.is_some()),
                    ] {
                        if present {
                            problem(at(key), "only inbound shapes take this key");
                        }
                    }
                    if let Some(span) = shape.messages {
                        check_span(&at("messages"), span, &mut problem);
                        if span.min() == 0 {
                            problem(
                                at("messages"),
                                "an agentless shape sends at least 1 message",
                            );
                        }
                    }
                    if let Some(span) = shape.message_gap_ms {
                        check_span(&at("message_gap_ms"), span, &mut problem);
                    }
                }
            }
            if let Some(agents) = &shape.agents {
                check_agents(&at("agents"), agents, &mut problem);
            }
            if let Some(receipts) = &shape.receipts {
                check_receipts(&at("receipts"), receipts, &mut problem);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(problems))
        }
    }

    /// The shape's agent timings: its own table, else the scenario's.
    pub fn agents_for(&self, shape: &Shape) -> AgentTimings {
        shape.agents.unwrap_or(self.agents)
    }

    /// The shape's receipt behaviour: its own table, else the scenario's.
    pub fn receipts_for(&self, shape: &Shape) -> ReceiptBehaviour {
        shape.receipts.unwrap_or(self.receipts)
    }

    /// Whether any shape with weight places voice calls (emulator only).
    pub fn uses_voice(&self) -> bool {
        self.shapes
            .iter()
            .any(|shape| shape.weight > 0 && shape.kind == ShapeKind::Voice)
    }

    /// Whether any shape with weight sends agentless messages (needs a from-address).
    pub fn uses_agentless(&self) -> bool {
        self.shapes
            .iter()
            .any(|shape| shape.weight > 0 && shape.kind == ShapeKind::Agentless)
    }
}

fn check_span(path: &str, span: Span, problem: &mut impl FnMut(String, &str)) {
    if span.min() > span.max() {
        problem(path.to_owned(), "range minimum is above its maximum");
    }
}

fn check_share(path: &str, share: f64, problem: &mut impl FnMut(String, &str)) {
    if !(0.0..=1.0).contains(&share) {
        problem(path.to_owned(), "a share must be between 0 and 1");
    }
}

fn check_agents(path: &str, agents: &AgentTimings, problem: &mut impl FnMut(String, &str)) {
    check_span(
        &format!("{path}.answer_after_ms"),
        agents.answer_after_ms,
        problem,
    );
    check_span(
        &format!("{path}.reply_after_ms"),
        agents.reply_after_ms,
        problem,
    );
    check_span(
        &format!("{path}.wrapup_after_ms"),
        agents.wrapup_after_ms,
        problem,
    );
}

fn check_receipts(path: &str, receipts: &ReceiptBehaviour, problem: &mut impl FnMut(String, &str)) {
    check_span(
        &format!("{path}.delivered_after_ms"),
        receipts.delivered_after_ms,
        problem,
    );
    check_span(
        &format!("{path}.read_after_ms"),
        receipts.read_after_ms,
        problem,
    );
    check_span(
        &format!("{path}.failed_after_ms"),
        receipts.failed_after_ms,
        problem,
    );
    check_share(&format!("{path}.read_share"), receipts.read_share, problem);
    check_share(
        &format!("{path}.never_share"),
        receipts.never_share,
        problem,
    );
    check_share(
        &format!("{path}.failed_share"),
        receipts.failed_share,
        problem,
    );
    if receipts.never_share + receipts.failed_share > 1.0 {
        problem(
            format!("{path}.failed_share"),
            "never_share + failed_share must not exceed 1",
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MIXED: &str = r#"
name = "mixed"
[agents]
answer_after_ms = [100, 400]
reply_after_ms = 200
[receipts]
never_share = 0.2
failed_share = 0.1
[[shapes]]
name = "in"
kind = "inbound"
weight = 3
outcome = "transfer"
customer_messages = [1, 3]
agent_replies = 2
attachment_share = 0.5
[[shapes]]
name = "out"
kind = "agentless"
weight = 1
messages = [1, 2]
[shapes.receipts]
read_share = 0.0
"#;

    #[test]
    fn reads_a_mixed_scenario_with_defaults_filled_in() {
        let scenario = Scenario::from_toml(MIXED).unwrap();
        assert_eq!(scenario.shapes.len(), 2);
        assert_eq!(scenario.agents.answer_after_ms, Span::Range([100, 400]));
        assert_eq!(scenario.agents.reply_after_ms, Span::Fixed(200));
        assert_eq!(
            scenario.agents.wrapup_after_ms,
            AgentTimings::default().wrapup_after_ms
        );
        assert_eq!(scenario.shapes[0].outcome(), Outcome::Transfer);
        assert_eq!(scenario.receipts_for(&scenario.shapes[1]).read_share, 0.0);
        assert_eq!(scenario.receipts_for(&scenario.shapes[0]).never_share, 0.2);
        assert!(scenario.uses_agentless());
    }

    #[test]
    fn the_example_scenarios_are_valid() {
        for (name, text) in [
            (
                "scenario-mixed.toml",
                include_str!("../../config/examples/scenario-mixed.toml"),
            ),
            (
                "scenario-fast.toml",
                include_str!("../../config/examples/scenario-fast.toml"),
            ),
            (
                "scenario-demo.toml",
                include_str!("../../config/examples/scenario-demo.toml"),
            ),
        ] {
            let scenario = Scenario::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(scenario.shapes.len() >= 4, "{name}");
        }
    }

    #[test]
    fn the_default_scenario_is_valid() {
        Scenario::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_syntax_errors_with_a_location() {
        let error =
            Scenario::from_toml("[[shapes]]\nname='a'\nkind='inbound'\nweight=1\nwieght=2\n")
                .unwrap_err();
        let ScenarioError::Syntax(message) = error else {
            panic!("expected a syntax error, got {error:?}")
        };
        assert!(message.contains("wieght"), "{message}");
        assert!(message.contains("line 5"), "{message}");
    }

    #[test]
    fn unknown_shape_kind_is_refused() {
        let error = Scenario::from_toml("[[shapes]]\nname='a'\nkind='carrier-pigeon'\nweight=1\n")
            .unwrap_err();
        assert!(matches!(error, ScenarioError::Syntax(_)), "{error:?}");
    }

    #[test]
    fn every_inconsistency_is_listed_with_its_path() {
        let text = r#"
[receipts]
never_share = 0.8
failed_share = 0.5
delivered_after_ms = [300, 100]
[[shapes]]
name = "a"
kind = "inbound"
weight = 0
outcome = "abandon"
agent_replies = 1
messages = 2
[[shapes]]
name = "a"
kind = "agentless"
weight = 0
outcome = "answered"
"#;
        let ScenarioError::Invalid(problems) = Scenario::from_toml(text).unwrap_err() else {
            panic!("expected validation problems")
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "shapes",
            "receipts.delivered_after_ms",
            "receipts.failed_share",
            "shapes[0].messages",
            "shapes[0].agent_replies",
            "shapes[1].name",
            "shapes[1].outcome",
        ] {
            assert!(paths.contains(&expected), "{expected} missing in {paths:?}");
        }
    }

    #[test]
    fn voice_shapes_take_routing_keys_only() {
        let ok = Scenario::from_toml(
            "[[shapes]]\nname='call'\nkind='voice'\nweight=1\nagent_replies=[1,2]\n[shapes.agents]\nanswer_after_ms=500\n",
        )
        .unwrap();
        assert!(ok.uses_voice());
        let text = "[[shapes]]\nname='call'\nkind='voice'\nweight=1\noutcome='abandon'\nagent_replies=1\ncustomer_messages=1\nattachment_share=0.5\n[shapes.receipts]\nread_share=1.0\n";
        let ScenarioError::Invalid(problems) = Scenario::from_toml(text).unwrap_err() else {
            panic!("expected validation problems")
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "shapes[0].customer_messages",
                "shapes[0].attachment_share",
                "shapes[0].receipts",
                "shapes[0].agent_replies",
            ]
        );
    }

    #[test]
    fn empty_scenario_needs_shapes() {
        let error = Scenario::from_toml("shapes = []").unwrap_err();
        assert_eq!(
            error,
            ScenarioError::Invalid(vec![Problem {
                path: "shapes".into(),
                message: "at least one [[shapes]] entry is required".into()
            }])
        );
    }

    #[test]
    fn shares_out_of_range_are_refused() {
        let text = "[[shapes]]\nname='a'\nkind='inbound'\nweight=1\nattachment_share=1.5\n";
        let error = Scenario::from_toml(text).unwrap_err();
        assert!(
            error.to_string().contains("shapes[0].attachment_share"),
            "{error}"
        );
    }
}
