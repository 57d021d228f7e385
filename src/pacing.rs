//! Pacing of connection start-ups: at most `limit` handshakes in flight to
//! one server at a time, the rest waiting in the order they asked. A server
//! throttles unauthenticated connections (OpenSSH `MaxStartups 10:30:100`
//! drops them at random past 10; Dropbear refuses a sixth from one address),
//! so starting a hundred tools at once gets some of them refused.
//!
//! The gate knows nothing of processes: whoever opens a connection holds a
//! [`Permit`] from before it spawns the tool until the connection is up (or
//! has failed). Keys are generic, so anything that opens connections to a
//! server can share one gate.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// OpenSSH starts refusing unauthenticated connections at random past 10
/// (`MaxStartups 10:30:100`) and Dropbear past 5 per client address
/// (`MAX_UNAUTH_PER_IP`): 5 stays below both, and leaves half of OpenSSH's
/// free for other clients of the same server (an administrator's ssh,
/// another host's netfs restoring at the same moment).
pub const DEFAULT_LIMIT: usize = 5;

/// One queue per key, each letting `limit` holders through at once.
pub struct Gate<K> {
    limit: usize,
    queues: Mutex<HashMap<K, Arc<Semaphore>>>,
}

/// Leave to go on with a start-up; the slot is free again when dropped.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone> Gate<K> {
    /// A gate letting `limit` (at least 1) start-ups per key through at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            queues: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for a free slot for `key`, behind everyone who asked before.
    /// Cancel-safe: dropping the future gives up the place in the queue.
    pub async fn enter(&self, key: &K) -> Permit {
        let queue = self.queue(key);
        let permit = queue
            .acquire_owned()
            .await
            .expect("the gate never closes its semaphores");
        Permit { _permit: permit }
    }

    /// Slots taken for `key` right now (holders, not waiters).
    pub fn in_flight(&self, key: &K) -> usize {
        self.lock()
            .get(key)
            .map_or(0, |q| self.limit - q.available_permits())
    }

    /// Keys with a queue; idle ones are dropped as others come and go.
    pub fn keys(&self) -> usize {
        self.lock().len()
    }

    fn queue(&self, key: &K) -> Arc<Semaphore> {
        let mut queues = self.lock();
        // A queue nobody holds or waits on is only held by the map: forget
        // it, so the map does not grow with every server ever seen.
        let limit = self.limit;
        queues.retain(|_, q| Arc::strong_count(q) > 1 || q.available_permits() < limit);
        queues
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Semaphore>>> {
        // The map holds no invariant a panic could break half-way.
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K> fmt::Debug for Gate<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("limit", &self.limit).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::{sleep, Instant};

    use super::*;

    /// `n` start-ups of `each` on `key`, all asking at once; returns when
    /// each one got through, in the order they asked.
    async fn starts(
        gate: Arc<Gate<&'static str>>,
        key: &'static str,
        n: usize,
        each: Duration,
    ) -> Vec<Duration> {
        let t0 = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..n {
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = gate.enter(&key).await;
                tx.send((i, t0.elapsed())).unwrap();
                sleep(each).await;
            });
            // Let it reach the queue before the next one asks.
            tokio::task::yield_now().await;
        }
        drop(tx);
        let mut entered = vec![Duration::ZERO; n];
        while let Some((i, at)) = rx.recv().await {
            entered[i] = at;
        }
        entered
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_limit_in_flight_the_rest_in_order() {
        let gate = Arc::new(Gate::new(5));
        let entered = starts(gate.clone(), "a", 12, Duration::from_millis(300)).await;
        let ms: Vec<u128> = entered.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 0, 0, 300, 300, 300, 300, 300, 600, 600]);
        assert_eq!(gate.in_flight(&"a"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn servers_do_not_wait_for_each_other() {
        let gate = Arc::new(Gate::new(2));
        let a = tokio::spawn(starts(gate.clone(), "a", 4, Duration::from_secs(1)));
        let b = tokio::spawn(starts(gate.clone(), "b", 2, Duration::from_secs(1)));
        let b = b.await.unwrap();
        assert_eq!(b, [Duration::ZERO, Duration::ZERO]);
        let a = a.await.unwrap();
        assert_eq!(a[2], Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_free_as_soon_as_a_start_fails_or_gives_up_waiting() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.enter(&"a").await;
        assert_eq!(gate.in_flight(&"a"), 1);
        // A waiter that is cancelled (a Stop while queued) leaves the queue.
        let cancelled = tokio::time::timeout(Duration::from_secs(1), gate.enter(&"a")).await;
        assert!(cancelled.is_err());
        let next = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let _p = gate.enter(&"a").await;
                t.elapsed()
            })
        };
        sleep(Duration::from_millis(250)).await;
        drop(first); // the start failed after 250 ms
        assert_eq!(next.await.unwrap(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_servers_are_forgotten() {
        let gate = Gate::new(3);
        for key in ["a", "b", "c"] {
            drop(gate.enter(&key).await);
        }
        let _held = gate.enter(&"d").await;
        assert_eq!(gate.keys(), 1, "only the queue in use is kept");
        assert_eq!(gate.limit(), 3);
        assert_eq!(
            Gate::<u8>::new(0).limit(),
            1,
            "a limit of 0 would never let anyone in"
        );
    }
}
