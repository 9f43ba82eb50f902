//! The relay's metrics, read from the hub's counters at scrape time.
//!
//! websocket-relay's four names keep their meaning with the right types (its users'
//! dashboards and alerts keep working): `websocket_connected_clients` (gauge),
//! `websocket_messages_total`, `websocket_connections_total`,
//! `websocket_disconnections_total` (counters). wsgate's own, per relay route:
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `wsgate_relay_deliveries_total` | counter | `route` (messages queued for members, one per recipient) |
//! | `wsgate_relay_room_deliveries_total` | counter | `room`: the 50 busiest rooms, the rest summed as `_other` |
//! | `wsgate_relay_queued_messages` | gauge | — (messages waiting in members' queues) |
//! | `wsgate_relay_dropped_total` | counter | `route`, `policy` (`drop_oldest`\|`drop_newest`: messages; `disconnect`: members closed with 1013) |
//! | `wsgate_relay_rate_limited_total`, `wsgate_relay_bad_frames_total`, `wsgate_relay_refused_total` | counter | `route` |
//! | `wsgate_relay_fanout_seconds` | histogram | `route` (publish → written to the member's connection) |

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use wsgate_relay::stats::{LATENCY_BUCKETS, RouteStats};
use wsgate_relay::{Hub, Overflow};

/// Rooms with a series of their own; the others are summed as `_other`.
pub const ROOM_SERIES: usize = 50;

#[derive(Debug)]
pub(crate) struct RelayCollector {
    pub(crate) hub: Arc<Hub>,
}

/// A histogram read from the relay's fixed buckets.
struct Fanout<'a>(&'a RouteStats);

impl EncodeMetric for Fanout<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (counts, sum) = self.0.fanout.read();
        let buckets: Vec<(f64, u64)> =
            LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]).zip(counts.iter().copied()).collect();
        let count = counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in series {
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter without labels.
fn single_counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(n).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.hub.route_stats();
        let sum = |f: &dyn Fn(&RouteStats) -> u64| routes.iter().map(|(_, s)| f(s)).sum::<u64>();
        let connected: i64 = routes.iter().map(|(_, s)| s.connected.load(Relaxed)).sum();
        let family = encoder.encode_descriptor(
            "websocket_connected_clients",
            "Relay clients connected now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(connected).encode(family)?;
        for (name, help, n) in [
            ("websocket_messages", "Messages relay clients sent", sum(&|s| s.messages.load(Relaxed))),
            ("websocket_connections", "Relay connections accepted", sum(&|s| s.connections.load(Relaxed))),
            ("websocket_disconnections", "Relay connections ended", sum(&|s| s.disconnections.load(Relaxed))),
        ] {
            single_counter(&mut encoder, name, help, n)?;
        }
        let per_route = |f: fn(&RouteStats) -> u64| {
            routes.iter().map(move |(r, s)| (vec![("route", r.to_string())], f(s))).collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "wsgate_relay_deliveries",
            "Messages queued for relay members (one per recipient)",
            per_route(|s| s.deliveries.load(Relaxed)),
        )?;
        let mut rooms: Vec<(String, u64)> =
            self.hub.rooms().into_iter().map(|r| (r.room.to_string(), r.deliveries)).collect();
        rooms.sort_by_key(|r| std::cmp::Reverse(r.1));
        let other: u64 = rooms.iter().skip(ROOM_SERIES).map(|r| r.1).sum();
        rooms.truncate(ROOM_SERIES);
        if other > 0 {
            rooms.push(("_other".into(), other));
        }
        counter(
            &mut encoder,
            "wsgate_relay_room_deliveries",
            "Messages queued for members, by room (the busiest rooms; the rest as _other)",
            rooms.into_iter().map(|(room, n)| (vec![("room", room)], n)),
        )?;
        let family = encoder.encode_descriptor(
            "wsgate_relay_queued_messages",
            "Messages waiting in relay members' queues",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.hub.queued() as i64).encode(family)?;
        let dropped = routes.iter().flat_map(|(r, s)| {
            Overflow::ALL
                .into_iter()
                .map(move |p| (vec![("route", r.to_string()), ("policy", p.as_str().into())], s.dropped(p)))
        });
        counter(
            &mut encoder,
            "wsgate_relay_dropped",
            "Messages dropped for slow relay members (drop_oldest, drop_newest), or members closed with 1013 (disconnect)",
            dropped,
        )?;
        counter(
            &mut encoder,
            "wsgate_relay_rate_limited",
            "Relay connections closed with 1008 for sending too fast",
            per_route(|s| s.rate_limited.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "wsgate_relay_bad_frames",
            "Envelope frames answered with an error frame",
            per_route(|s| s.bad_frames.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "wsgate_relay_refused",
            "Relay upgrades refused (too many connections from one address, authentication)",
            per_route(|s| s.refused.load(Relaxed)),
        )?;
        let mut family = encoder.encode_descriptor(
            "wsgate_relay_fanout_seconds",
            "Publish to written on the member's connection",
            None,
            MetricType::Histogram,
        )?;
        for (r, s) in &routes {
            let labels = [("route", r.to_string())];
            Fanout(s).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
