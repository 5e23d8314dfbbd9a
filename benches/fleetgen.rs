//! Deterministic generated fleets and policy sets for benchmarks.
//!
//! Devices carry realistic tags (environment, site, hardware model, ring), a
//! reported agent version and an `azureiotsecurity` module twin; policies
//! overlap on tags, reported properties and status with distinct priorities
//! wherever their targets can meet, so the set compiles without conflicts.
//! Module twins carry the agent's full configuration (about 2 KB a device);
//! [`in_states`] configures a share of the fleet with the policies first,
//! drifting and lagging some of it, as a fleet under twinops looks.

use std::fmt::Write as _;

const SEC: &str = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "lab"];
const SITES: [&str; 8] = [
    "ams1", "dub2", "sea1", "sin1", "fra1", "syd1", "iad3", "gru1",
];
const MODELS: [&str; 10] = [
    "rpi4",
    "rpi5",
    "jetson-nano",
    "jetson-orin",
    "nuc11",
    "nuc13",
    "imx8",
    "stm32mp1",
    "ugw-a",
    "ugw-b",
];
const RINGS: [&str; 3] = ["canary", "early", "broad"];
const VERSIONS: [&str; 4] = ["0.0.3", "0.0.4", "0.0.5", "0.0.6"];

/// Every setting of the agent configuration at its default, as the module
/// twin carries it (`reference/security-module-twin.md`).
const FULL_CONFIGURATION: &str = concat!(
    r#"{"highPriorityMessageFrequency":{"value":"PT7M"},"lowPriorityMessageFrequency":{"value":"PT5H"},"#,
    r#""snapshotFrequency":{"value":"PT13H"},"maxLocalCacheSizeInBytes":{"value":2560000},"#,
    r#""maxMessageSizeInBytes":{"value":204800},"baselineCustomChecksEnabled":{"value":false},"#,
    r#""eventPriorityConnectedHardware":{"value":"Low"},"eventPriorityListeningPorts":{"value":"High"},"#,
    r#""eventPriorityProcessCreate":{"value":"Low"},"eventPriorityProcessTerminate":{"value":"Low"},"#,
    r#""eventPrioritySystemInformation":{"value":"Low"},"eventPriorityLocalUsers":{"value":"High"},"#,
    r#""eventPriorityLogin":{"value":"High"},"eventPriorityConnectionCreate":{"value":"Low"},"#,
    r#""eventPriorityFirewallConfiguration":{"value":"Low"},"eventPriorityOSBaseline":{"value":"Low"},"#,
    r#""eventPriorityDiagnostic":{"value":"Low"},"eventPriorityConfigurationError":{"value":"Low"},"#,
    r#""eventPriorityDroppedEventsStatistics":{"value":"Low"},"eventPriorityMessageStatistics":{"value":"Low"},"#,
    r#""eventPriorityOperational":{"value":"High"},"aggregationEnabledProcessCreate":{"value":true},"#,
    r#""aggregationIntervalProcessCreate":{"value":"PT1H"},"aggregationEnabledConnectionCreate":{"value":true},"#,
    r#""aggregationIntervalConnectionCreate":{"value":"PT1H"},"aggregationEnabledProcessTerminate":{"value":true},"#,
    r#""aggregationIntervalProcessTerminate":{"value":"PT1H"}}"#
);

/// xorshift64*: small, fast, deterministic.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in [0, 1).
    #[expect(
        clippy::cast_precision_loss,
        reason = "a uniform draw needs no more than 53 bits"
    )]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let at = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items.get(at).copied().unwrap_or_default()
    }
}

/// NDJSON snapshot text of `devices` devices with their module twins.
pub(crate) fn fleet(devices: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(devices * 2200);
    for index in 0..devices {
        let environment = rng.pick(&ENVIRONMENTS);
        let site = rng.pick(&SITES);
        let model = rng.pick(&MODELS);
        let ring_name = rng.pick(&RINGS);
        let version = rng.pick(&VERSIONS);
        let edge = rng.next().is_multiple_of(10);
        let status = if rng.next().is_multiple_of(50) {
            "disabled"
        } else {
            "enabled"
        };
        let id = format!("dev-{site}-{index:07}");
        let _ = writeln!(
            out,
            r#"{{"deviceId":"{id}","etag":"AAAAAAAAAAE=","version":3,"status":"{status}","connectionState":"Disconnected","capabilities":{{"iotEdge":{edge}}},"tags":{{"environment":"{environment}","site":"{site}","hardware":{{"model":"{model}","revision":"r{r}"}},"ring":"{ring_name}"}},"properties":{{"desired":{{"$metadata":{{"$lastUpdated":"2026-01-01T00:00:00Z"}},"$version":1}},"reported":{{"agentVersion":"{version}","os":{{"name":"linux","kernel":"6.1.{k}"}},"$metadata":{{"$lastUpdated":"2026-01-01T00:00:00Z"}},"$version":4}}}}}}"#,
            r = rng.next() % 4,
            k = rng.next() % 90,
        );
        if !rng.next().is_multiple_of(20) {
            // The full agent configuration, as a tool that wrote it whole
            // leaves it: about 2 KB for the device and its module twin.
            let _ = writeln!(
                out,
                r#"{{"deviceId":"{id}","moduleId":"azureiotsecurity","etag":"AAAAAAAAAAI=","version":4,"properties":{{"desired":{{"{SEC}":{FULL_CONFIGURATION},"$metadata":{{"$lastUpdated":"2026-01-01T00:00:00Z"}},"$version":2}},"reported":{{"{SEC}":{FULL_CONFIGURATION},"$metadata":{{"$lastUpdated":"2026-01-01T00:00:00Z"}},"$version":2}}}}}}"#
            );
        }
    }
    out
}

fn policy(out: &mut String, name: &str, priority: u32, target: &str, settings: &[(&str, String)]) {
    let _ = writeln!(
        out,
        "---\napiVersion: twinops/v1\nkind: Policy\nname: {name}\npriority: {priority}\ntarget: \"{target}\"\nmodule: azureiotsecurity\ndesired:\n  {SEC}:"
    );
    for (key, value) in settings {
        let _ = writeln!(out, "    {key}: {{ value: {value} }}");
    }
}

/// A policy set of `count` policies (at least 25) with overlapping targets.
#[expect(
    clippy::too_many_lines,
    reason = "one block per policy family, read top to bottom"
)]
pub(crate) fn policies(count: usize, devices: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut out = String::new();
    let minutes = |n: u64| format!("PT{n}M");
    policy(
        &mut out,
        "baseline",
        0,
        "*",
        &[
            ("highPriorityMessageFrequency", minutes(7)),
            ("lowPriorityMessageFrequency", "PT5H".into()),
            ("maxLocalCacheSizeInBytes", "2560000".into()),
            ("maxMessageSizeInBytes", "204800".into()),
        ],
    );
    for (at, environment) in ENVIRONMENTS.iter().enumerate() {
        let frequency = minutes(2 + at as u64 * 3);
        policy(
            &mut out,
            &format!("env-{environment}"),
            10,
            &format!("tags.environment = '{environment}'"),
            &[
                ("highPriorityMessageFrequency", frequency),
                (
                    "eventPriorityLogin",
                    if at == 0 { "High".into() } else { "Low".into() },
                ),
            ],
        );
    }
    for site in SITES {
        policy(
            &mut out,
            &format!("site-{site}"),
            20,
            &format!("tags.site = '{site}'"),
            &[("snapshotFrequency", format!("PT{}H", 6 + rng.next() % 6))],
        );
    }
    for model in MODELS {
        policy(
            &mut out,
            &format!("hw-{model}"),
            30,
            &format!("tags.hardware.model = '{model}'"),
            &[(
                "maxMessageSizeInBytes",
                (4096 * (20 + rng.next() % 40)).to_string(),
            )],
        );
    }
    for ring in RINGS {
        policy(
            &mut out,
            &format!("ring-{ring}"),
            40,
            &format!("tags.ring = '{ring}' AND status = 'enabled'"),
            &[(
                "eventPriorityDiagnostic",
                if ring == "canary" {
                    "High".into()
                } else {
                    "Low".into()
                },
            )],
        );
    }
    policy(
        &mut out,
        "old-agents",
        50,
        "properties.reported.agentVersion < '0.0.5'",
        &[("aggregationEnabledProcessCreate", "false".into())],
    );
    policy(
        &mut out,
        "edge-gateways",
        51,
        "capabilities.iotEdge = true AND tags.environment IN ['production', 'staging']",
        &[("maxLocalCacheSizeInBytes", "10485760".into())],
    );
    let fixed = 1 + ENVIRONMENTS.len() + SITES.len() + MODELS.len() + RINGS.len() + 2;
    for exception in 0..count.saturating_sub(fixed) {
        let index = usize::try_from(rng.next() % devices.max(1) as u64).unwrap_or(0);
        let site = SITES
            .get(exception % SITES.len())
            .copied()
            .unwrap_or("ams1");
        let priority = 100 + u32::try_from(exception).unwrap_or(0);
        policy(
            &mut out,
            &format!("exception-{exception:03}"),
            priority,
            &format!(
                "deviceId = 'dev-ams1-{index:07}' OR (tags.site = '{site}' AND tags.ring = 'canary' AND properties.reported.os.kernel = '6.1.{}')",
                exception % 90
            ),
            &[(
                "highPriorityMessageFrequency",
                minutes(1 + (exception as u64 % 5)),
            )],
        );
    }
    out
}

/// Shares of the twins a policy set would change, by the state they are in.
pub(crate) struct States {
    /// Already configured by twinops: the plan applied, tags and all.
    pub(crate) configured: f64,
    /// Of those, changed since behind twinops' back.
    pub(crate) drifted: f64,
    /// Of those, not yet reported back by the device.
    pub(crate) lagging: f64,
}

/// `fleet` with a share of the twins `policies` target already configured,
/// some of those drifted and some lagging in reported; the rest as they
/// were (unconfigured, or without the module).
pub(crate) fn in_states(
    fleet: &twinops::fleet::Fleet,
    project: (
        &twinops::diag::SourceMap,
        &twinops::schema::SchemaSet,
        &twinops::validate::PolicySet,
    ),
    states: &States,
    seed: u64,
) -> twinops::fleet::Fleet {
    use twinops::plan::{self, Context, Origin};
    let (sources, schemas, policies) = project;
    let mut diags = twinops::diag::Diagnostics::new();
    let desired = twinops::compile::fleet(policies, schemas, fleet, &mut diags);
    let context = Context {
        origin: Origin {
            hub: None,
            policy_set: plan::policy_set_digest(policies, schemas),
            commit: None,
        },
        create_modules: false,
    };
    let mut configured = plan::diff(&desired, fleet, policies, schemas, sources, &context);
    let mut rng = Rng::new(seed ^ 0x0057_a7e5);
    configured
        .changes
        .retain(|_| rng.unit() < states.configured);
    let mut out = plan::applied(&configured, fleet);
    for twin in &configured.changes {
        let Some(device) = out
            .devices
            .binary_search_by(|device| device.id().cmp(&twin.device_id))
            .ok()
            .and_then(|at| out.devices.get_mut(at))
        else {
            continue;
        };
        let target = match &twin.module_id {
            Some(module) => device.modules.get_mut(module),
            None => Some(&mut device.twin),
        };
        let Some(target) = target else { continue };
        let draw = rng.unit();
        let json = &mut target.json;
        if draw < states.drifted {
            if let Some(login) = json.pointer_mut(&format!(
                "/properties/desired/{SEC}/eventPriorityLogin/value"
            )) {
                let flipped = if login == "High" { "Low" } else { "High" };
                *login = serde_json::Value::from(flipped);
            }
        } else if draw >= states.drifted + states.lagging {
            // Caught up: the agent reports what it was given.
            let wanted = json.pointer(&format!("/properties/desired/{SEC}")).cloned();
            let reported = json
                .pointer_mut("/properties/reported")
                .and_then(serde_json::Value::as_object_mut);
            if let (Some(wanted), Some(reported)) = (wanted, reported) {
                reported.insert(SEC.to_owned(), wanted);
            }
        }
    }
    out
}
