//! One direction of a simulated link: its configuration, its impairments and its counters.

use std::collections::VecDeque;

use synack_tcp::time::{Duration, Instant};

use super::rng::{fires, scale_below, Xoshiro256StarStar};

/// The Gilbert-Elliott bursty-loss model: a two-state Markov chain (Good, Bad), each state with
/// its own loss probability.
///
/// E. N. Gilbert, "Capacity of a burst-noise channel", Bell System Technical Journal 39(5),
/// 1960; E. O. Elliott, "Estimates of error rates for codes on burst-noise channels", BSTJ
/// 42(5), 1963. The same model is Linux netem's `loss gemodel` (see also RFC 3611 §4.7.2 for
/// burst/gap loss metrics).
///
/// The chain starts in Good and is advanced once per packet offered to the path: the packet's
/// fate is drawn with the loss probability of the current state, then the chain moves (Good → Bad
/// with `p_good_to_bad`, Bad → Good with `p_bad_to_good`). So with `loss_bad = 1` and
/// `loss_good = 0` the number of consecutive losses is geometric with mean `1 / p_bad_to_good`,
/// and the long-run fraction of packets seen in Bad is
/// `p_good_to_bad / (p_good_to_bad + p_bad_to_good)`.
///
/// A packet is lost when either this model or the path's independent `loss` says so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from Good to Bad after a packet.
    pub p_good_to_bad: f64,
    /// Probability of moving from Bad to Good after a packet.
    pub p_bad_to_good: f64,
    /// Loss probability while in Good (Gilbert's original model has 0 here).
    pub loss_good: f64,
    /// Loss probability while in Bad (Gilbert's original model has 1 here).
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Gilbert's original model: nothing is lost in Good, everything in Bad. Mean burst length
    /// is `1 / p_bad_to_good` packets.
    pub fn gilbert(p_good_to_bad: f64, p_bad_to_good: f64) -> Self {
        GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run loss rate of the chain alone: `π_good · loss_good + π_bad · loss_bad`.
    pub fn mean_loss(&self) -> f64 {
        let sum = self.p_good_to_bad + self.p_bad_to_good;
        if sum <= 0.0 {
            return self.loss_good; // never leaves Good
        }
        let bad = self.p_good_to_bad / sum;
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }
}

/// How one direction of a link treats the packets sent over it.
///
/// `PathConfig::default()` is a perfect path: no delay, infinite bandwidth, no impairment.
/// Every field is public; the `with_*` methods are a builder over them:
///
/// ```
/// use synack_stack::sim::PathConfig;
/// use synack_tcp::time::Duration;
///
/// let path = PathConfig::delay(Duration::from_millis(40))
///     .with_bandwidth(10_000_000)
///     .with_queue_limit(64 * 1024)
///     .with_loss(0.01);
/// assert_eq!(path.delay, Duration::from_millis(40));
/// ```
///
/// A packet offered to a path goes through these stages, in this order:
/// 1. **Queue** (only with `bandwidth_bps`): it waits in a FIFO behind the packets not yet
///    serialized; if the bytes already waiting (not counting the packet on the wire) plus its
///    own would exceed `queue_limit_bytes`, it is tail-dropped (`dropped_queue`). A packet that
///    finds the transmitter idle goes straight onto the wire and is never tail-dropped.
/// 2. **Serialization**: `bits / bandwidth_bps`, starting when the previous packet finished.
/// 3. **Loss**: independent Bernoulli `loss`, or the [`GilbertElliott`] chain (`dropped_loss`).
///    A lost packet still used its serialization time, as it would on a real wire.
/// 4. **Corruption**: with probability `corrupt`, one uniformly chosen bit is flipped. Checksums
///    are not fixed: the receiver's checks must catch it.
/// 5. **Delay**: `delay`, plus a uniform `[0, jitter)` extra (jitter may reorder packets), plus
///    `reorder_delay` with probability `reorder` (a hold-back that lets later packets overtake;
///    only these are counted as `reordered`).
/// 6. **Duplication**: with probability `duplicate`, an intact copy (taken before corruption,
///    as netem does) is delivered at the same instant, right after the original.
///
/// Probabilities are compared against a uniform draw in `[0, 1)`: `<= 0` (or NaN) never fires,
/// `>= 1` always does. Each packet consumes the same fixed number of random draws whatever the
/// configuration, so changing one impairment does not shift the draws of another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Upper bound of a uniform extra delay in `[0, jitter)`, drawn per packet (microsecond
    /// resolution). RFC 3393 calls the resulting variation IPDV.
    pub jitter: Duration,
    /// Serialization rate in bits per second; `None` is infinite. `Some(0)` is a dead link:
    /// every packet is dropped and counted as `dropped_queue`.
    pub bandwidth_bps: Option<u64>,
    /// Bytes allowed to wait for serialization (excluding the packet on the wire); `None` is
    /// unbounded. Meaningless (never drops) without `bandwidth_bps`.
    pub queue_limit_bytes: Option<usize>,
    /// Independent per-packet loss probability (RFC 2680's one-way loss, Bernoulli).
    pub loss: f64,
    /// Bursty loss, in addition to `loss`.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Probability that a packet is held back by the reorder delay (RFC 4737 reordering).
    pub reorder: f64,
    /// The hold-back of a reordered packet; `None` means `2 × delay`, or 10 ms when `delay` is
    /// zero (see [`PathConfig::effective_reorder_delay`]).
    pub reorder_delay: Option<Duration>,
    /// Probability that a second, intact copy is delivered right after the packet.
    pub duplicate: f64,
    /// Probability that one random bit of the packet is flipped in flight.
    pub corrupt: f64,
}

impl PathConfig {
    /// A perfect path: the same as `PathConfig::default()`.
    pub fn perfect() -> Self {
        PathConfig::default()
    }

    /// A path with this one-way delay and nothing else.
    pub fn delay(delay: Duration) -> Self {
        PathConfig {
            delay,
            ..PathConfig::default()
        }
    }

    /// Sets the one-way delay.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the jitter bound.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the serialization rate in bits per second.
    pub fn with_bandwidth(mut self, bits_per_second: u64) -> Self {
        self.bandwidth_bps = Some(bits_per_second);
        self
    }

    /// Sets the limit of the queue in front of the serializer, in bytes.
    pub fn with_queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit_bytes = Some(bytes);
        self
    }

    /// Sets the independent loss probability.
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sets the Gilbert-Elliott bursty-loss model.
    pub fn with_gilbert_elliott(mut self, model: GilbertElliott) -> Self {
        self.gilbert_elliott = Some(model);
        self
    }

    /// Sets the reorder probability (the hold-back stays at its default unless set).
    pub fn with_reorder(mut self, p: f64) -> Self {
        self.reorder = p;
        self
    }

    /// Sets the hold-back of reordered packets.
    pub fn with_reorder_delay(mut self, delay: Duration) -> Self {
        self.reorder_delay = Some(delay);
        self
    }

    /// Sets the duplication probability.
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Sets the bit-flip probability.
    pub fn with_corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }

    /// The hold-back a reordered packet gets: `reorder_delay`, or `2 × delay`, or 10 ms when the
    /// delay is zero.
    pub fn effective_reorder_delay(&self) -> Duration {
        match self.reorder_delay {
            Some(d) => d,
            None if self.delay.is_zero() => Duration::from_millis(10),
            None => self.delay.saturating_mul(2),
        }
    }

    /// The longest a packet of at most `max_packet` bytes can take from being offered to being
    /// delivered: waiting behind the packet on the wire and a full queue, its own
    /// serialization, the delay, the largest jitter and the reorder hold-back. `None` when it
    /// has no bound: a rate without a queue limit (the queue may grow without end), or a dead
    /// link (`Some(0)`, which delivers nothing, also has no bound to give).
    ///
    /// ```
    /// use synack_stack::sim::PathConfig;
    /// use synack_tcp::time::Duration;
    ///
    /// let p = PathConfig::delay(Duration::from_millis(25)).with_jitter(Duration::from_millis(5));
    /// assert_eq!(p.max_transit(1500), Some(Duration::from_millis(30)));
    /// let p = p.with_bandwidth(8_000_000).with_queue_limit(3000);
    /// // 1500 B on the wire, 3000 B queued, its own 1500 B: 6000 B at 1 MB/s.
    /// assert_eq!(p.max_transit(1500), Some(Duration::from_millis(36) + Duration::from_micros(1)));
    /// assert_eq!(PathConfig::default().with_bandwidth(1000).max_transit(1500), None);
    /// ```
    pub fn max_transit(&self, max_packet: usize) -> Option<Duration> {
        let queueing = match (self.bandwidth_bps, self.queue_limit_bytes) {
            (None, _) => Duration::ZERO,
            (Some(0), _) | (Some(_), None) => return None,
            (Some(_), Some(q)) => {
                // Rounded up to the microsecond once more, as delivery instants are.
                self.serialization_time(q.saturating_add(max_packet.saturating_mul(2)))
                    + Duration::from_micros(1)
            }
        };
        let reorder = if self.reorder > 0.0 {
            self.effective_reorder_delay()
        } else {
            Duration::ZERO
        };
        Some(
            queueing
                .saturating_add(self.delay)
                .saturating_add(self.jitter)
                .saturating_add(reorder),
        )
    }

    /// How long `bytes` take to serialize at the configured rate (zero when unlimited).
    pub fn serialization_time(&self, bytes: usize) -> Duration {
        match self.bandwidth_bps {
            None => Duration::ZERO,
            Some(0) => Duration::MAX,
            Some(bps) => {
                let ps = serialization_ps(bytes, bps);
                let ns = ps.div_ceil(1000);
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            }
        }
    }
}

/// Counters of one direction of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Packets offered to the path.
    pub sent: u64,
    /// Packets delivered to the receiving host (duplicates included).
    pub delivered: u64,
    /// Bytes of the delivered packets.
    pub bytes_delivered: u64,
    /// Packets dropped by `loss` or the Gilbert-Elliott model.
    pub dropped_loss: u64,
    /// Packets tail-dropped at the queue (or offered to a dead link).
    pub dropped_queue: u64,
    /// Extra copies scheduled by `duplicate`.
    pub duplicated: u64,
    /// Packets that had a bit flipped.
    pub corrupted: u64,
    /// Packets held back by the reorder delay.
    pub reordered: u64,
}

impl PathStats {
    /// Adds another path's counters to these.
    pub fn add(&mut self, o: &PathStats) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.bytes_delivered += o.bytes_delivered;
        self.dropped_loss += o.dropped_loss;
        self.dropped_queue += o.dropped_queue;
        self.duplicated += o.duplicated;
        self.corrupted += o.corrupted;
        self.reordered += o.reordered;
    }
}

const PS_PER_US: u128 = 1_000_000;

/// Picoseconds to serialize `bytes` at `bps` (> 0), rounded down: the error is below 1 ps per
/// packet, so a million packets drift by less than a microsecond.
fn serialization_ps(bytes: usize, bps: u64) -> u128 {
    (bytes as u128) * 8 * 1_000_000_000_000 / u128::from(bps)
}

/// The random draws of one packet, always taken all together so that the stream position does
/// not depend on the configuration or on what happened to earlier packets.
struct Draws {
    loss: f64,
    ge_loss: f64,
    ge_move: f64,
    corrupt: f64,
    corrupt_bit: u64,
    reorder: f64,
    jitter: u64,
    duplicate: f64,
}

impl Draws {
    fn take(rng: &mut Xoshiro256StarStar) -> Self {
        Draws {
            loss: rng.next_f64(),
            ge_loss: rng.next_f64(),
            ge_move: rng.next_f64(),
            corrupt: rng.next_f64(),
            corrupt_bit: rng.next_u64(),
            reorder: rng.next_f64(),
            jitter: rng.next_u64(),
            duplicate: rng.next_f64(),
        }
    }
}

/// One direction of a link, with its state.
pub(crate) struct Path {
    pub(crate) config: PathConfig,
    pub(crate) stats: PathStats,
    rng: Xoshiro256StarStar,
    /// Gilbert-Elliott state: true in Bad.
    bad: bool,
    /// When the serializer is free, in picoseconds since the epoch.
    free_ps: u128,
    /// Packets not yet fully serialized: (start, end) in picoseconds and length in bytes.
    /// Only the front one can be on the wire; the others wait.
    backlog: VecDeque<(u128, u128, usize)>,
    /// Sum of the lengths in `backlog`.
    backlog_bytes: usize,
}

impl Path {
    pub(crate) fn new(config: PathConfig, seed: u64) -> Self {
        Path {
            config,
            stats: PathStats::default(),
            rng: Xoshiro256StarStar::seed_from_u64(seed),
            bad: false,
            free_ps: 0,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
        }
    }

    /// Bytes waiting for the serializer at `now` (excluding the packet on the wire).
    pub(crate) fn queued_bytes(&mut self, now: Instant) -> usize {
        let now_ps = u128::from(now.as_micros()) * PS_PER_US;
        while let Some(&(_, end, len)) = self.backlog.front() {
            if end > now_ps {
                break;
            }
            self.backlog.pop_front();
            self.backlog_bytes -= len;
        }
        match self.backlog.front() {
            Some(&(start, _, len)) if start <= now_ps => self.backlog_bytes - len,
            _ => self.backlog_bytes,
        }
    }

    /// Offers `packet` at `now`; calls `deliver(at, bytes)` for each copy that will arrive, in
    /// the order they must be delivered when their instants are equal.
    pub(crate) fn offer(
        &mut self,
        now: Instant,
        packet: &[u8],
        mut deliver: impl FnMut(Instant, Vec<u8>),
    ) {
        self.stats.sent += 1;
        let d = Draws::take(&mut self.rng);

        // Gilbert-Elliott: the packet's fate in the current state, then the chain moves.
        let mut ge_lost = false;
        if let Some(ge) = self.config.gilbert_elliott {
            let (p_loss, p_move) = if self.bad {
                (ge.loss_bad, ge.p_bad_to_good)
            } else {
                (ge.loss_good, ge.p_good_to_bad)
            };
            ge_lost = fires(d.ge_loss, p_loss);
            if fires(d.ge_move, p_move) {
                self.bad = !self.bad;
            }
        }

        // Queue and serialization.
        let departs = match self.config.bandwidth_bps {
            None => now,
            Some(0) => {
                self.stats.dropped_queue += 1;
                return;
            }
            Some(bps) => {
                let now_ps = u128::from(now.as_micros()) * PS_PER_US;
                let waiting = self.queued_bytes(now);
                let start = self.free_ps.max(now_ps);
                if start > now_ps {
                    if let Some(limit) = self.config.queue_limit_bytes {
                        if waiting.saturating_add(packet.len()) > limit {
                            self.stats.dropped_queue += 1;
                            return;
                        }
                    }
                }
                let end = start + serialization_ps(packet.len(), bps);
                self.free_ps = end;
                self.backlog.push_back((start, end, packet.len()));
                self.backlog_bytes += packet.len();
                let us = end.div_ceil(PS_PER_US);
                Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
            }
        };

        if fires(d.loss, self.config.loss) || ge_lost {
            self.stats.dropped_loss += 1;
            return;
        }

        let mut bytes = packet.to_vec();
        if fires(d.corrupt, self.config.corrupt) && !bytes.is_empty() {
            let bit = scale_below(d.corrupt_bit, bytes.len() as u64 * 8);
            // bit < len * 8, so the index is in bounds.
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }

        let jitter_us = u64::try_from(self.config.jitter.as_micros()).unwrap_or(u64::MAX);
        let mut at =
            departs + self.config.delay + Duration::from_micros(scale_below(d.jitter, jitter_us));
        if fires(d.reorder, self.config.reorder) {
            at += self.config.effective_reorder_delay();
            self.stats.reordered += 1;
        }

        let copy = fires(d.duplicate, self.config.duplicate).then(|| packet.to_vec());
        deliver(at, bytes);
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            deliver(at, copy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_all(path: &mut Path, now: Instant, n: usize, len: usize) -> Vec<Instant> {
        let mut out = Vec::new();
        for _ in 0..n {
            path.offer(now, &vec![0x45; len], |at, _| out.push(at));
        }
        out
    }

    #[test]
    fn default_is_perfect() {
        let mut p = Path::new(PathConfig::default(), 1);
        let times = offer_all(&mut p, Instant::from_millis(5), 1000, 100);
        assert!(times.iter().all(|&t| t == Instant::from_millis(5)));
        assert_eq!(p.stats.sent, 1000);
        assert_eq!(p.stats.dropped_loss + p.stats.dropped_queue, 0);
    }

    #[test]
    fn serialization_is_back_to_back_without_drift() {
        // 1500 bytes at 12 Mbit/s is exactly 1 ms.
        let mut p = Path::new(PathConfig::default().with_bandwidth(12_000_000), 1);
        let times = offer_all(&mut p, Instant::ZERO, 1000, 1500);
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, Instant::from_millis(i as u64 + 1));
        }
        // A rate that does not divide evenly: 1000 bytes at 3 Mbit/s = 2666.67 µs each. Times
        // must follow the exact sum, rounded up, not an accumulation of rounded steps.
        let mut p = Path::new(PathConfig::default().with_bandwidth(3_000_000), 1);
        let times = offer_all(&mut p, Instant::ZERO, 3000, 1000);
        for (i, t) in times.iter().enumerate() {
            let exact_ns = (i as u128 + 1) * 8000 * 1_000_000_000 / 3_000_000;
            assert_eq!(u128::from(t.as_micros()), exact_ns.div_ceil(1000));
        }
    }

    #[test]
    fn queue_limit_excludes_the_packet_on_the_wire() {
        let cfg = PathConfig::default()
            .with_bandwidth(12_000_000)
            .with_queue_limit(3000);
        let mut p = Path::new(cfg, 1);
        let times = offer_all(&mut p, Instant::ZERO, 10, 1500);
        // One on the wire, two waiting, seven dropped.
        assert_eq!(times.len(), 3);
        assert_eq!(p.stats.dropped_queue, 7);
        // At 1 ms the first has left, the second is on the wire: one slot is free again.
        assert_eq!(p.queued_bytes(Instant::from_millis(1)), 1500);
        let more = offer_all(&mut p, Instant::from_millis(1), 2, 1500);
        assert_eq!(more, vec![Instant::from_millis(4)]);
        assert_eq!(p.stats.dropped_queue, 8);
    }

    #[test]
    fn dead_link_drops_everything() {
        let mut p = Path::new(PathConfig::default().with_bandwidth(0), 1);
        assert!(offer_all(&mut p, Instant::ZERO, 10, 100).is_empty());
        assert_eq!(p.stats.dropped_queue, 10);
    }

    #[test]
    fn reorder_delay_defaults() {
        assert_eq!(
            PathConfig::default().effective_reorder_delay(),
            Duration::from_millis(10)
        );
        assert_eq!(
            PathConfig::delay(Duration::from_millis(30)).effective_reorder_delay(),
            Duration::from_millis(60)
        );
        assert_eq!(
            PathConfig::delay(Duration::from_millis(30))
                .with_reorder_delay(Duration::from_millis(1))
                .effective_reorder_delay(),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn serialization_time_helper() {
        let c = PathConfig::default().with_bandwidth(12_000_000);
        assert_eq!(c.serialization_time(1500), Duration::from_millis(1));
        assert_eq!(
            PathConfig::default().serialization_time(1500),
            Duration::ZERO
        );
    }

    #[test]
    fn gilbert_mean_loss() {
        let ge = GilbertElliott::gilbert(0.01, 0.09);
        assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
        let stuck = GilbertElliott::gilbert(0.0, 0.0);
        assert_eq!(stuck.mean_loss(), 0.0);
    }

    #[test]
    fn corrupting_an_empty_packet_is_harmless() {
        let mut p = Path::new(PathConfig::default().with_corrupt(1.0), 1);
        let mut got = Vec::new();
        p.offer(Instant::ZERO, &[], |_, b| got.push(b));
        assert_eq!(got, vec![Vec::<u8>::new()]);
        assert_eq!(p.stats.corrupted, 0);
    }
}
