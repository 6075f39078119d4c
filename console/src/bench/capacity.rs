//! The capacity model: from the events/s per core each role reached in this run, the fleet for
//! a sustained rate at replication factor 3, under assumptions printed beside it. It is
//! computed, not written down, so it moves with the code and the machine; bench/CAPACITY.md
//! explains the reasoning and what a linear model of this kind leaves out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{events_per_core, Results, Search};
use crate::units::thousands as num;

/// How events arrive: one per request, or in batches (the gateway's and Redis's cost is per
/// request, so the shape changes the fleet in front of Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batches,
}

/// Events/s per core, as measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Gateway, producer and Redis at the single-event stage's peak through the gateway (of
    /// the one-broker stack or the cluster, whichever held the higher rate: their cost is per
    /// request and does not depend on the brokers).
    pub single: BTreeMap<String, f64>,
    /// The same for batches of 100.
    pub batches: BTreeMap<String, f64>,
    /// All brokers together at the peak of the cluster's batches of 100, for either shape: the
    /// producer batches records per partition whichever way they arrived, so at these rates
    /// the brokers see the same produce requests. (A single-event stage on this machine peaks
    /// at a rate where each produce request carries a handful of records, and its cost per
    /// event would be that of a near-idle cluster.)
    pub kafka: f64,
    /// Consumer (all instances together) and PostgreSQL over the cluster's fastest drain.
    pub store: BTreeMap<String, f64>,
    pub wal_bytes_per_event: Option<f64>,
    pub table_bytes_per_event: Option<f64>,
    pub record_bytes: f64,
    pub replication_factor: u16,
}

impl Measured {
    /// From a bench with a cluster stage; `None` without one (a one-broker Kafka's cost per
    /// event says nothing about replication) or when the cluster had no passing batched step
    /// or drain.
    pub fn from_results(r: &Results) -> Option<Self> {
        let c = r.cluster.as_ref()?;
        let peak_per_core = |s: &Search| {
            let step = s.peak()?;
            let rate = step.report.accepted_rate();
            Some((rate, events_per_core(rate, &step.cores)))
        };
        // The stage's higher peak of the two stacks.
        let best = |stage: usize| {
            [r.searches.get(stage), c.searches.get(stage)]
                .into_iter()
                .flatten()
                .filter_map(peak_per_core)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, cores)| front(cores))
                .unwrap_or_default()
        };
        let kafka = c
            .searches
            .get(2)
            .and_then(peak_per_core)
            .and_then(|(_, cores)| cores.get("kafka").copied())?;
        let drain = c
            .drains
            .iter()
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))?;
        Some(Self {
            single: best(0),
            batches: best(2),
            kafka,
            store: events_per_core(drain.rate(), &drain.cores),
            wal_bytes_per_event: drain.wal_bytes_per_event,
            table_bytes_per_event: drain.table_bytes_per_event,
            record_bytes: r.record_bytes as f64,
            replication_factor: c.replication_factor,
        })
    }

    fn rate(&self, role: &str, shape: Shape) -> Option<f64> {
        let front = match shape {
            Shape::Single => &self.single,
            Shape::Batches => &self.batches,
        };
        match role {
            "kafka" => Some(self.kafka),
            "consumer" | "postgres" => self.store.get(role).copied(),
            _ => front.get(role).copied(),
        }
    }
}

/// The roles whose cost is per request: what stands in front of Kafka.
fn front(mut cores: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    cores.retain(|role, _| matches!(role.as_str(), "gateway" | "producer" | "redis"));
    cores
}

/// What the model assumes about hosts and headroom; printed with the fleet.
#[derive(Debug, Clone)]
pub struct Assumptions {
    pub service_host_cores: f64,
    pub broker_host_cores: f64,
    /// Each role is planned at this share of its measured rate per core: at 0.6, losing one
    /// instance of three leaves the other two at 0.9.
    pub utilisation: f64,
    pub min_services: u32,
    pub min_brokers: u32,
    /// Cores one PostgreSQL primary turns into ingest before WAL insertion and its single WAL
    /// writer stop it scaling.
    pub postgres_useful_cores: f64,
    /// Sustained WAL a primary's disk takes, fsyncs included.
    pub postgres_wal_mb_per_s: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            service_host_cores: 4.0,
            broker_host_cores: 8.0,
            utilisation: 0.6,
            min_services: 2,
            min_brokers: 3,
            postgres_useful_cores: 16.0,
            postgres_wal_mb_per_s: 400.0,
        }
    }
}

/// A role's instances and the cores they use at the planned rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sized {
    pub instances: u32,
    pub cores: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub rate: f64,
    pub shape: Shape,
    pub gateways: Option<Sized>,
    pub producers: Option<Sized>,
    pub brokers: Option<Sized>,
    pub consumers: Option<Sized>,
    pub partitions: Option<u32>,
    /// Redis is one thread per shard: shards, not hosts.
    pub redis_shards: Option<Sized>,
    pub postgres_primaries: Option<Sized>,
    pub kafka_bytes_per_day: f64,
    pub postgres_bytes_per_day: Option<f64>,
}

fn instances(cores: f64, per_host: f64, a: &Assumptions, min: u32) -> u32 {
    ((cores / (per_host * a.utilisation)).ceil() as u32).max(min)
}

/// The rate one PostgreSQL primary carries at the planned utilisation: by its cores, and by its
/// WAL (when measured).
pub fn postgres_ceiling(m: &Measured, a: &Assumptions) -> (Option<f64>, Option<f64>) {
    let by_cores = m
        .store
        .get("postgres")
        .map(|per_core| per_core * a.postgres_useful_cores * a.utilisation);
    let by_wal = m
        .wal_bytes_per_event
        .filter(|b| *b > 0.0)
        .map(|b| a.postgres_wal_mb_per_s * 1e6 * a.utilisation / b);
    (by_cores, by_wal)
}

pub fn fleet(m: &Measured, a: &Assumptions, rate: f64, shape: Shape) -> Fleet {
    let cores = |role: &str| m.rate(role, shape).map(|per_core| rate / per_core);
    let service = |role: &str| {
        cores(role).map(|c| Sized {
            instances: instances(c, a.service_host_cores, a, a.min_services),
            cores: c,
        })
    };
    let brokers = cores("kafka").map(|c| Sized {
        instances: instances(c, a.broker_host_cores, a, a.min_brokers),
        cores: c,
    });
    let consumers = service("consumer");
    // Twice the consumers, so the group can double without adding partitions (which would move
    // organizations between partitions and break their order), and a multiple of the brokers
    // so leadership spreads evenly.
    let partitions = consumers.zip(brokers).map(|(c, b)| {
        let wanted = (2 * c.instances).max(6);
        wanted.div_ceil(b.instances) * b.instances
    });
    let (by_cores, by_wal) = postgres_ceiling(m, a);
    let ceiling = match (by_cores, by_wal) {
        (Some(c), Some(w)) => Some(c.min(w)),
        (c, w) => c.or(w),
    };
    let postgres_primaries = cores("postgres").zip(ceiling).map(|(c, ceiling)| Sized {
        instances: ((rate / ceiling).ceil() as u32).max(1),
        cores: c,
    });
    let redis_shards = cores("redis").map(|c| Sized {
        instances: instances(c, 1.0, a, 1),
        cores: c,
    });
    const DAY: f64 = 86_400.0;
    Fleet {
        rate,
        shape,
        gateways: service("gateway"),
        producers: service("producer"),
        brokers,
        consumers,
        partitions,
        redis_shards,
        postgres_primaries,
        kafka_bytes_per_day: rate * m.record_bytes * f64::from(m.replication_factor) * DAY,
        postgres_bytes_per_day: m.table_bytes_per_event.map(|b| rate * b * DAY),
    }
}

/// The rates the model is asked about.
pub const RATES: [f64; 2] = [100_000.0, 1_000_000.0];

fn sized(s: Option<Sized>) -> String {
    s.map_or_else(
        || "–".into(),
        |s| format!("{} ({:.1} cores)", s.instances, s.cores),
    )
}

fn bytes(b: f64) -> String {
    const TB: f64 = 1e12;
    const GB: f64 = 1e9;
    if b >= TB {
        format!("{:.1} TB", b / TB)
    } else {
        format!("{:.0} GB", b / GB)
    }
}

pub fn render(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Capacity model\n");
    let Some(m) = Measured::from_results(r) else {
        let why = if r.cluster.is_none() {
            "this run had no cluster stage (`logctl bench --brokers 3`)"
        } else {
            "the cluster's batches of 100 have no passing step, or it has no drain, to scale from"
        };
        let _ = writeln!(
            md,
            "Not computed: it scales from the cluster's figures (replication factor 3), and \
             {why}.\n"
        );
        return;
    };
    let a = Assumptions::default();
    let _ = writeln!(
        md,
        "The fleet for a sustained rate at replication factor {rf}, scaled linearly from the \
         events/s per core above. Gateway, producer and Redis (whose cost is per request) at \
         the peak of the single-event and batch-of-100 stages through the gateway, whichever \
         stack held the higher rate; Kafka (all brokers together) at the peak of the cluster's \
         batches of 100, for both shapes, as the producer batches records per partition \
         however they arrived; consumer and PostgreSQL over the cluster's fastest drain. \
         Assumed: services on {sh:.0}-core hosts, brokers on \
         {bh:.0}-core hosts, every role planned at {u:.0}% of its measured rate per core (one \
         instance of three lost leaves the others at {lost:.0}%), at least {ms} instances of each \
         service and {mb} brokers, partitions twice the consumers and a multiple of the brokers, \
         one PostgreSQL primary useful up to {pc:.0} cores and {pw:.0} MB/s of WAL. Instances \
         (cores they use at that rate). bench/CAPACITY.md has the reasoning and what the model \
         leaves out.\n",
        rf = m.replication_factor,
        sh = a.service_host_cores,
        bh = a.broker_host_cores,
        u = a.utilisation * 100.0,
        lost = a.utilisation * 150.0,
        ms = a.min_services,
        mb = a.min_brokers,
        pc = a.postgres_useful_cores,
        pw = a.postgres_wal_mb_per_s,
    );
    let fleets: Vec<Fleet> = RATES
        .iter()
        .flat_map(|rate| {
            [Shape::Single, Shape::Batches]
                .into_iter()
                .map(|shape| fleet(&m, &a, *rate, shape))
        })
        .collect();
    let heads: Vec<String> = fleets
        .iter()
        .map(|f| {
            let shape = match f.shape {
                Shape::Single => "single events",
                Shape::Batches => "batches of 100",
            };
            format!("{}/s, {shape}", num(f.rate))
        })
        .collect();
    let _ = writeln!(md, "| | {} |", heads.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(fleets.len()));
    let row = |md: &mut String, name: &str, cell: &dyn Fn(&Fleet) -> String| {
        let cells: Vec<String> = fleets.iter().map(cell).collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    };
    row(md, "gateways", &|f| sized(f.gateways));
    row(md, "producers", &|f| sized(f.producers));
    row(md, "Kafka brokers", &|f| sized(f.brokers));
    row(md, "`log-events` partitions", &|f| {
        f.partitions.map_or_else(|| "–".into(), |p| p.to_string())
    });
    row(md, "consumers", &|f| sized(f.consumers));
    row(md, "PostgreSQL primaries", &|f| sized(f.postgres_primaries));
    row(md, "Redis shards", &|f| sized(f.redis_shards));
    row(
        md,
        &format!(
            "Kafka disk per day kept (RF {}, before compression)",
            m.replication_factor
        ),
        &|f| bytes(f.kafka_bytes_per_day),
    );
    row(md, "PostgreSQL disk per day kept", &|f| {
        f.postgres_bytes_per_day.map_or_else(|| "–".into(), bytes)
    });
    let _ = writeln!(md);
    let (by_cores, by_wal) = postgres_ceiling(&m, &a);
    let opt = |v: Option<f64>| v.map_or_else(|| "not measured".into(), num);
    let _ = writeln!(
        md,
        "One PostgreSQL primary stops being enough at about {} events/s by its cores and {} \
         events/s by its WAL ({} WAL bytes and {} table bytes per event, measured over the \
         drain); past that, events are split over primaries by organization.\n",
        opt(by_cores),
        opt(by_wal),
        opt(m.wal_bytes_per_event),
        opt(m.table_bytes_per_event),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        let map = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        Measured {
            single: map(&[
                ("gateway", 10_000.0),
                ("producer", 40_000.0),
                ("redis", 50_000.0),
            ]),
            batches: map(&[("gateway", 100_000.0), ("producer", 200_000.0)]),
            kafka: 20_000.0,
            store: map(&[("consumer", 100_000.0), ("postgres", 50_000.0)]),
            wal_bytes_per_event: Some(1_000.0),
            table_bytes_per_event: Some(500.0),
            record_bytes: 400.0,
            replication_factor: 3,
        }
    }

    #[test]
    fn each_role_is_sized_from_its_own_rate_per_core() {
        let a = Assumptions::default();
        let f = fleet(&measured(), &a, 100_000.0, Shape::Single);
        // 100,000 / 10,000 per core = 10 cores; 4-core hosts at 60% take 2.4 each: 5 hosts.
        assert_eq!(
            f.gateways,
            Some(Sized {
                instances: 5,
                cores: 10.0
            })
        );
        // 2.5 cores is under two hosts' worth: the minimum of two stands.
        assert_eq!(f.producers.map(|s| s.instances), Some(2));
        // 5 cores of brokers on 8-core hosts at 60% (4.8 each): 2, raised to the quorum's 3.
        assert_eq!(f.brokers.map(|s| s.instances), Some(3));
        // Redis: 2 cores at 60% of one thread each: 4 shards.
        assert_eq!(f.redis_shards.map(|s| s.instances), Some(4));
        // Two consumers: partitions max(4, 6) = 6, a multiple of 3 brokers.
        assert_eq!(f.consumers.map(|s| s.instances), Some(2));
        assert_eq!(f.partitions, Some(6));
        // 100,000 events of 400 bytes, three copies, a day.
        assert_eq!(f.kafka_bytes_per_day, 100_000.0 * 400.0 * 3.0 * 86_400.0);
    }

    #[test]
    fn batches_cut_the_fleet_in_front_of_kafka_and_not_behind_it() {
        let a = Assumptions::default();
        let single = fleet(&measured(), &a, 1_000_000.0, Shape::Single);
        let batches = fleet(&measured(), &a, 1_000_000.0, Shape::Batches);
        let gateways = |f: &Fleet| f.gateways.map_or(0, |s| s.instances);
        assert!(
            gateways(&batches) < gateways(&single),
            "{batches:?} {single:?}"
        );
        assert_eq!(batches.brokers, single.brokers);
        assert_eq!(batches.consumers, single.consumers);
        assert_eq!(batches.postgres_primaries, single.postgres_primaries);
        // No Redis figure for batches was measured: the model says so rather than guess.
        assert_eq!(batches.redis_shards, None);
    }

    #[test]
    fn postgres_is_split_where_one_primary_stops_being_enough() {
        let a = Assumptions::default();
        let m = measured();
        // Cores: 50,000 per core x 16 x 0.6 = 480,000/s; WAL: 400 MB/s x 0.6 / 1,000 B =
        // 240,000/s, the lower, so the binding one.
        let (by_cores, by_wal) = postgres_ceiling(&m, &a);
        assert_eq!(by_cores, Some(480_000.0));
        assert_eq!(by_wal, Some(240_000.0));
        let f = fleet(&m, &a, 1_000_000.0, Shape::Batches);
        assert_eq!(f.postgres_primaries.map(|s| s.instances), Some(5));
        assert_eq!(
            fleet(&m, &a, 100_000.0, Shape::Batches)
                .postgres_primaries
                .map(|s| s.instances),
            Some(1)
        );
    }

    #[test]
    fn partitions_leave_room_for_the_group_to_double() {
        let a = Assumptions::default();
        let f = fleet(&measured(), &a, 1_000_000.0, Shape::Single);
        // 10 consumer cores at 2.4 a host: 5 consumers; 10 partitions rounded up to a
        // multiple of the brokers.
        let consumers = f.consumers.map_or(0, |s| s.instances);
        let brokers = f.brokers.map_or(0, |s| s.instances);
        let partitions = f.partitions.unwrap_or(0);
        assert_eq!(consumers, 5);
        assert!(partitions >= 2 * consumers);
        assert_eq!(partitions % brokers, 0);
    }
}
