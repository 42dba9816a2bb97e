//! Bounded resources: per-client token buckets for the rate limit, and slots held out
//! of a bounded count (open connections, WebSocket sessions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rate limit: `per_second` units refill a bucket of `burst`; a request costs
/// one unit and each generated token one more.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// Per-client token buckets that may go into debt.
///
/// Written here rather than taken from `governor`: generated tokens are charged
/// after the fact (a generation's length is known only at its end), so a bucket must
/// be able to go below zero and make the client wait off the debt; governor's GCRA
/// refuses a cost it cannot cover instead of recording it, and never admits a cost
/// above the burst.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    units: f64,
    at: Instant,
}

/// Buckets kept before full (idle) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(&self, client: &str, f: impl FnOnce(&mut Bucket, &RateLimit) -> T) -> T {
        let now = Instant::now();
        let l = self.limit;
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(client) {
            map.retain(|_, b| {
                b.units + now.duration_since(b.at).as_secs_f64() * l.per_second < l.burst
            });
        }
        let b = map.entry(client.to_string()).or_insert(Bucket {
            units: l.burst,
            at: now,
        });
        b.units = (b.units + now.duration_since(b.at).as_secs_f64() * l.per_second).min(l.burst);
        b.at = now;
        f(b, &l)
    }

    /// The limit the buckets refill at.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Take one unit for a request, or say how long to wait for it.
    pub fn take(&self, client: &str) -> Result<(), Duration> {
        self.with_bucket(client, |b, l| {
            if b.units >= 1.0 {
                b.units -= 1.0;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((1.0 - b.units) / l.per_second))
            }
        })
    }

    /// Charge `units` after the fact (generated tokens); the bucket may go into debt.
    pub fn charge(&self, client: &str, units: f64) {
        self.with_bucket(client, |b, _| b.units -= units);
    }
}

/// Counts a live item (connection, WebSocket) while held.
pub struct Held(Arc<AtomicUsize>);

impl Held {
    /// Hold one of `count` if fewer than `max` are held.
    pub fn try_new(count: &Arc<AtomicUsize>, max: usize) -> Option<Held> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Held(count.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open connections per client address, so that one client cannot hold every
/// connection the server allows.
#[derive(Debug, Default)]
pub struct PerAddress(Mutex<HashMap<std::net::IpAddr, usize>>);

/// One connection of an address, given back on drop.
pub struct HeldAddress(Arc<PerAddress>, std::net::IpAddr);

impl PerAddress {
    /// Hold one of the `max` connections `ip` may have open (0: no cap), or `None`.
    pub fn try_hold(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<HeldAddress> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(HeldAddress(self.clone(), ip))
    }

    /// Connections `ip` has open.
    pub fn open(&self, ip: std::net::IpAddr) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }
}

/// What a connection holds of the connection cap and of its address's share. A
/// WebSocket session takes them when its connection is upgraded (hyper lets go of an
/// upgraded connection), so an open session keeps counting against both; otherwise
/// they are given back when the connection ends.
#[derive(Clone)]
pub struct ConnectionSlots(Arc<Mutex<Option<(Held, HeldAddress)>>>);

impl ConnectionSlots {
    pub fn new(held: Held, address: HeldAddress) -> Self {
        ConnectionSlots(Arc::new(Mutex::new(Some((held, address)))))
    }

    /// The slots, for a session that outlives the connection's task (once).
    pub fn take(&self) -> Option<(Held, HeldAddress)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for HeldAddress {
    fn drop(&mut self) {
        let mut map = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1); // the map holds only addresses with connections
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_go_into_debt() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1000.0,
            burst: 2.0,
        });
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_err());
        assert!(l.take("b").is_ok(), "clients have their own buckets");
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.take("a").is_ok(), "refilled");
        l.charge("a", 1000.0);
        let wait = l.take("a").unwrap_err();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
    }

    #[test]
    fn each_address_holds_at_most_its_share() {
        let p = Arc::new(PerAddress::default());
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let one = p.try_hold(a, 2).unwrap();
        let two = p.try_hold(a, 2).unwrap();
        assert!(p.try_hold(a, 2).is_none());
        assert!(
            p.try_hold(b, 2).is_some(),
            "another address has its own share"
        );
        drop(one);
        let three = p.try_hold(a, 2).unwrap();
        drop((two, three));
        assert_eq!(p.open(a), 0);
        assert!(
            p.0.lock().unwrap().is_empty(),
            "nothing kept for closed addresses"
        );
        assert!(p.try_hold(a, 0).is_some(), "0: no cap");
    }
}
