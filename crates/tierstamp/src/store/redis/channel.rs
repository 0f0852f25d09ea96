//! The invalidation channel: the subscriber task (reconnected with backoff,
//! pinged so a hung Redis is noticed), its messages, and the [`Listener`] an
//! in-process tier hears them through. The channel counts as up only once the
//! epoch was read after subscribing.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;

use super::topology;
use super::{Inner, RedisStore, mono_us};

/// What the invalidation channel and the breaker tell an in-process tier.
pub(crate) trait Listener: Send + Sync + 'static {
    /// The subscription came up (after a successful SUBSCRIBE) or went down.
    fn on_channel(&self, up: bool);
    /// Generations moved to these values (the channel's messages, in the
    /// order Redis published them).
    fn on_gens(&self, gens: &[(String, u64)]);
    /// A token read just before this instance sends a bump of its own; the
    /// bump's reply goes to [`on_bumped`](Self::on_bumped) with it.
    fn before_bump(&self) -> u64 {
        0
    }
    /// This instance's own bump answered with these values. Unlike a message,
    /// a reply can arrive after newer values were published (another
    /// instance's bump of the same counter): a listener that may have dropped
    /// a counter since `token` must not learn it from the reply.
    fn on_bumped(&self, gens: &[(String, u64)], _token: u64) {
        self.on_gens(gens);
    }
    /// The epoch moved.
    fn on_epoch(&self, epoch: u64);
    /// The breaker opened: the shared store is considered down.
    fn on_outage(&self);
}

impl RedisStore {
    /// How many times the invalidation channel was (re)subscribed.
    pub fn channel_connects(&self) -> u64 {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Whether the invalidation subscription is up.
    pub fn channel_up(&self) -> bool {
        self.inner.channel_up.load(Ordering::SeqCst)
    }

    /// Whether Redis answered a ping on the channel sent less than `op_timeout`
    /// ago: while it did not, a message for this instance may be stuck in a
    /// hung Redis, and the in-process tier must not answer.
    ///
    /// Why `op_timeout` closes the window of a hung Redis: a ping sent at `s`
    /// and answered was processed before the hang began (at `h`), so `s < h` and
    /// this instance stops trusting its L1 before `h + op_timeout`. A writer
    /// whose invalidation failed saw its first failure of the outage (`f`) no
    /// earlier than `h`, and [`Store::bump`](crate::Store::bump) reports the failure no earlier
    /// than `f + op_timeout`: by the time the write's response can be sent, no
    /// instance trusts an L1 that could not hear of it.
    ///
    /// What it does not cover: the channel lives on one node, so in a Cluster
    /// it proves that node alive, not the master of every slot; and a writer
    /// cut off from a Redis that its peers still reach leaves their channel
    /// healthy. There, the writer's failed invalidation is relayed another way
    /// (Campus sends it through PostgreSQL) and peers learn of it within that
    /// relay's delay.
    pub(crate) fn heard_recently(&self) -> bool {
        let heard = self.inner.heard_at_us.load(Ordering::Relaxed);
        heard != 0
            && mono_us() < heard.saturating_add(self.inner.config.op_timeout.as_micros() as u64)
    }

    fn handle_message(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut gens = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("g"), Some(key), Some(v)) => {
                    if let Ok(v) = v.parse() {
                        gens.push((key.to_owned(), v));
                    }
                }
                (Some("e"), Some(v), None) => {
                    if let Ok(e) = v.parse() {
                        self.observe_epoch(e);
                    }
                }
                _ => tracing::debug!(line, "ignored invalidation message"),
            }
        }
        if !gens.is_empty()
            && let Some(l) = self.listener()
        {
            l.on_gens(&gens);
        }
    }

    fn set_channel(&self, up: bool) {
        self.inner.channel_up.store(up, Ordering::SeqCst);
        crate::telemetry::channel(up);
        if let Some(l) = self.listener() {
            l.on_channel(up);
        }
    }
}

/// Keeps a subscription to the invalidation channel, reconnecting with backoff,
/// and pings it so a hung connection is noticed (a paused Redis keeps TCP open).
pub(super) async fn subscriber(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        let Some((channel, config, conn)) = weak
            .upgrade()
            .map(|i| (i.channel.clone(), i.config.clone(), i.conn.clone()))
        else {
            return;
        };
        let (connect_timeout, op_timeout, ping_every) = (
            config.connect_timeout,
            config.op_timeout,
            config.ping_interval.min(config.op_timeout / 3),
        );
        attempt += 1;
        let connected = async {
            let client = topology::subscriber_client(&conn, attempt).await?;
            let subscribed = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            }
            .await;
            if subscribed.is_err() {
                // Behind Sentinel: an idle instance learns here that its master is
                // gone, and asks the sentinels again next time.
                topology::unreachable(&conn, &client);
            }
            subscribed
        };
        if let Ok(Ok(ps)) = tokio::time::timeout(connect_timeout + op_timeout, connected).await {
            let Some(store) = weak.upgrade().map(|inner| RedisStore { inner }) else {
                return;
            };
            // An epoch bump published while we were not listening must not be
            // missed: the epoch is read before the channel counts as up, so no
            // read trusts L1 (nor judges an entry) under the old one meanwhile.
            let asked = mono_us();
            let epoch_ok = store.refresh_epoch().await.is_ok();
            if epoch_ok {
                store.inner.heard_at_us.fetch_max(asked, Ordering::SeqCst);
                store.set_channel(true);
                store.inner.connects.fetch_add(1, Ordering::SeqCst);
            }
            drop(store);
            if epoch_ok {
                backoff = Duration::from_millis(50);
                let (mut sink, mut stream) = ps.split();
                let mut ping = tokio::time::interval(ping_every);
                ping.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => match weak.upgrade() {
                                Some(inner) => RedisStore { inner }.handle_message(msg.get_payload_bytes()),
                                None => return,
                            },
                            None => break,
                        },
                        _ = ping.tick() => {
                            let sent = mono_us();
                            let pong = tokio::time::timeout(op_timeout * 2, sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                            match weak.upgrade() {
                                Some(inner) => inner.heard_at_us.fetch_max(sent, Ordering::SeqCst),
                                None => return,
                            };
                        }
                    }
                }
            }
            match weak.upgrade() {
                Some(inner) => RedisStore { inner }.set_channel(false),
                None => return,
            }
            tracing::warn!("invalidation channel down: in-process tier disabled until it is back");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
