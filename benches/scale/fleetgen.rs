//! Deterministic generated fleets and policy sets for the benchmarks.
//!
//! Devices carry realistic tags (environment, site, hardware model, ring), a
//! reported agent version and an `azureiotsecurity` module twin; policies
//! (10 to 1,000 of them) overlap on tags, reported properties and status with
//! distinct priorities wherever their targets can meet, so a set compiles
//! without conflicts. Module twins carry the agent's full configuration
//! (about 2 KB a device); [`in_states`] configures a share of the fleet with
//! the policies first, drifting and lagging some of it, as a fleet under
//! twinops looks. Each device is drawn from its own seed, so a fleet can be
//! generated a range of devices at a time.

use std::fmt::Write as _;

use crate::measure::Policies;

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

    /// The generator of item `index` of a stream seeded with `seed`: the
    /// same whichever chunk the item is generated in (splitmix64 spreads
    /// neighbouring indices apart).
    pub(crate) fn for_item(seed: u64, index: usize) -> Self {
        let mut mixed = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::new(mixed ^ (mixed >> 31))
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

/// The id of device `index`: zero-padded, so snapshots written in index
/// order are sorted by device id, as the local hub exports them.
pub(crate) fn device_id(index: usize) -> String {
    format!("dev-{index:07}")
}

/// NDJSON snapshot text of the devices numbered `devices`, each with its
/// module twin (one in twenty has none), in device id order. A device is the
/// same whichever range it is generated in.
pub(crate) fn fleet(devices: std::ops::Range<usize>, seed: u64) -> String {
    let mut out = String::with_capacity(devices.len() * 2200);
    for index in devices {
        let mut rng = Rng::for_item(seed, index);
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
        let id = device_id(index);
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

/// The share of devices with no module twin is one in twenty: twins per
/// device, times twenty.
const TWINS_PER_TWENTY_DEVICES: usize = 39;

/// How many devices make about `twins` twins with their module twins.
pub(crate) fn devices_for(twins: usize) -> usize {
    (twins * 20).div_ceil(TWINS_PER_TWENTY_DEVICES).max(1)
}

/// One policy of a generated set, as its YAML document says it.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) priority: u32,
    pub(crate) target: String,
    /// Settings of the agent configuration: key and YAML value.
    pub(crate) settings: Vec<(&'static str, String)>,
}

impl Policy {
    /// Appends the policy as one YAML document.
    pub(crate) fn write(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "---\napiVersion: twinops/v1\nkind: Policy\nname: {}\npriority: {}\ntarget: \"{}\"\nmodule: azureiotsecurity\ndesired:\n  {SEC}:",
            self.name, self.priority, self.target
        );
        for (key, value) in &self.settings {
            let _ = writeln!(out, "    {key}: {{ value: {value} }}");
        }
    }
}

/// `PTnM`: a duration of `n` minutes.
pub(crate) fn minutes(n: u64) -> String {
    format!("PT{n}M")
}

/// A policy set of `count` policies with overlapping targets, over a fleet
/// of `devices` devices: families in the order baseline, environments,
/// rings, old agents, edge gateways, sites, hardware models, then per-device
/// exceptions, cut at `count`. Each family has its own priority, so targets
/// that meet never tie.
pub(crate) fn policy_set(count: usize, devices: usize, seed: u64) -> Vec<Policy> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let policy = |name: String, priority, target: String, settings| Policy {
        name,
        priority,
        target,
        settings,
    };
    let mut set = vec![policy(
        "baseline".into(),
        0,
        "*".into(),
        vec![
            ("highPriorityMessageFrequency", minutes(7)),
            ("lowPriorityMessageFrequency", "PT5H".into()),
            ("maxLocalCacheSizeInBytes", "2560000".into()),
            ("maxMessageSizeInBytes", "204800".into()),
        ],
    )];
    for (at, environment) in (0_u64..).zip(ENVIRONMENTS) {
        set.push(policy(
            format!("env-{environment}"),
            10,
            format!("tags.environment = '{environment}'"),
            vec![
                ("highPriorityMessageFrequency", minutes(2 + at * 3)),
                (
                    "eventPriorityLogin",
                    if at == 0 { "High".into() } else { "Low".into() },
                ),
            ],
        ));
    }
    for ring in RINGS {
        let diagnostic = if ring == "canary" { "High" } else { "Low" };
        set.push(policy(
            format!("ring-{ring}"),
            40,
            format!("tags.ring = '{ring}' AND status = 'enabled'"),
            vec![("eventPriorityDiagnostic", diagnostic.into())],
        ));
    }
    set.push(policy(
        "old-agents".into(),
        50,
        "properties.reported.agentVersion < '0.0.5'".into(),
        vec![("aggregationEnabledProcessCreate", "false".into())],
    ));
    set.push(policy(
        "edge-gateways".into(),
        51,
        "capabilities.iotEdge = true AND tags.environment IN ['production', 'staging']".into(),
        vec![("maxLocalCacheSizeInBytes", "10485760".into())],
    ));
    for site in SITES {
        set.push(policy(
            format!("site-{site}"),
            20,
            format!("tags.site = '{site}'"),
            vec![("snapshotFrequency", format!("PT{}H", 6 + rng.next() % 6))],
        ));
    }
    for model in MODELS {
        set.push(policy(
            format!("hw-{model}"),
            30,
            format!("tags.hardware.model = '{model}'"),
            vec![(
                "maxMessageSizeInBytes",
                (4096 * (20 + rng.next() % 40)).to_string(),
            )],
        ));
    }
    for exception in 0..count.saturating_sub(set.len()) {
        let index = usize::try_from(rng.next() % devices.max(1) as u64).unwrap_or(0);
        let site = SITES
            .get(exception % SITES.len())
            .copied()
            .unwrap_or("ams1");
        set.push(policy(
            format!("exception-{exception:03}"),
            100 + u32::try_from(exception).unwrap_or(0),
            format!(
                "deviceId = '{}' OR (tags.site = '{site}' AND tags.ring = 'canary' AND properties.reported.os.kernel = '6.1.{}')",
                device_id(index),
                exception % 90
            ),
            vec![(
                "highPriorityMessageFrequency",
                minutes(1 + (exception as u64 % 5)),
            )],
        ));
    }
    set.truncate(count);
    set
}

/// [`policy_set`] as one YAML file.
pub(crate) fn policies(count: usize, devices: usize, seed: u64) -> String {
    let mut out = String::new();
    for policy in policy_set(count, devices, seed) {
        policy.write(&mut out);
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
    policies: &Policies,
    states: &States,
    seed: u64,
) -> twinops::fleet::Fleet {
    use twinops::plan;
    let mut configured = policies.plan(fleet);
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
