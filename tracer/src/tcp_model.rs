//! The kernel's give-up arithmetic (net/ipv4/tcp_timer.c), so that predictions and the
//! doctor's "time to detect a dead peer" agree with what the kernel will do. Pure functions.

/// TCP_RTO_MIN and TCP_RTO_MAX (include/net/tcp.h), in ms.
pub const RTO_MIN_MS: u64 = 200;
pub const RTO_MAX_MS: u64 = 120_000;
/// TCP_TIMEOUT_INIT: the first SYN retransmission timeout.
pub const TIMEOUT_INIT_MS: u64 = 1_000;

/// `tcp_model_timeout()`: how long "boundary" exponentially backed-off retransmissions take
/// from an RTO of `rto_base_ms`, with the backoff capped at TCP_RTO_MAX. This is the
/// time-based budget of `retransmits_timed_out()` for tcp_retries1/2 and orphan retries.
///
/// tcp_retries2 = 15 → 924.6 s.
pub fn retries_budget_ms(boundary: u32, rto_base_ms: u64) -> u64 {
    let linear_backoff_thresh = (RTO_MAX_MS / rto_base_ms).ilog2();
    if boundary <= linear_backoff_thresh {
        ((2u64 << boundary) - 1) * rto_base_ms
    } else {
        ((2u64 << linear_backoff_thresh) - 1) * rto_base_ms
            + u64::from(boundary - linear_backoff_thresh) * RTO_MAX_MS
    }
}

/// The budget an established connection with unacknowledged data gets before ETIMEDOUT:
/// TCP_USER_TIMEOUT when set, else the tcp_retries2 model.
pub fn data_give_up_budget_ms(retries2: u8, user_timeout_ms: u32) -> u64 {
    if user_timeout_ms != 0 {
        u64::from(user_timeout_ms)
    } else {
        retries_budget_ms(u32::from(retries2), RTO_MIN_MS)
    }
}

/// When the RTO timer will fire next, k times: starting at `last_fire_ms` with the current
/// `rto_ms`, doubling each time and capped at TCP_RTO_MAX.
pub fn rto_schedule(last_fire_ms: u64, rto_ms: u64, count: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(count);
    let (mut t, mut rto) = (last_fire_ms, rto_ms.max(1));
    for _ in 0..count {
        t += rto;
        out.push(t);
        rto = (rto * 2).min(RTO_MAX_MS);
    }
    out
}

/// The moment the kernel gives up on unacknowledged data: the first RTO firing at or after
/// `clock_start_ms + budget` (the check runs only when the timer fires). `last_fire_ms`
/// and `next_rto_ms` describe the most recent RTO and the timeout now armed.
pub fn predicted_give_up_ms(
    clock_start_ms: u64,
    budget_ms: u64,
    last_fire_ms: u64,
    next_rto_ms: u64,
    lateness: f64,
) -> u64 {
    let deadline = clock_start_ms + budget_ms;
    let (mut t, mut rto) = (last_fire_ms, next_rto_ms.max(1));
    // Bounded: the backoff reaches TCP_RTO_MAX quickly and the budget is finite.
    for _ in 0..10_000 {
        t += (rto as f64 * lateness) as u64;
        if t >= deadline {
            return t;
        }
        rto = (rto * 2).min(RTO_MAX_MS);
    }
    t
}

/// When the kernel will give up on unacknowledged data, seen from an RTO retransmit at
/// `last_fire_ms` that reported `rto_ms`. tcp_write_timeout() runs each time the retransmit
/// timer fires and compares the time since `clock_start_ms` (retrans_stamp: the streak's first
/// RTO retransmit) with `budget_ms`. The timer armed after that retransmit is
/// twice the reported RTO (tcp_retransmit_timer() backs off after sending), capped at
/// TCP_RTO_MAX. With TCP_USER_TIMEOUT, tcp_clamp_rto_to_user_timeout() shortens the timer
/// so that it fires at the deadline itself.
///
/// Timers never fire early, and the kernel's timer wheel fires long timers up to 1/8 of
/// their length late. Each firing checks the budget at its real time, so near the boundary
/// that lateness decides whether the kernel gives up now or one backoff later: `lateness`
/// is how late this socket's timer has been running (observed interval ÷ nominal, clamped
/// to 1.0..=[`MAX_TIMER_LATENESS`]), applied to the firings still to come.
pub fn predicted_data_give_up_ms(
    clock_start_ms: u64,
    budget_ms: u64,
    user_timeout: bool,
    last_fire_ms: u64,
    rto_ms: u64,
    lateness: f64,
) -> u64 {
    let deadline = clock_start_ms + budget_ms;
    if user_timeout {
        return deadline.max(last_fire_ms);
    }
    let armed = (rto_ms.max(RTO_MIN_MS) * 2).min(RTO_MAX_MS);
    let lateness = lateness.clamp(1.0, MAX_TIMER_LATENESS);
    predicted_give_up_ms(clock_start_ms, budget_ms, last_fire_ms, armed, lateness)
}

/// The timer wheel's worst case: a timer fires up to 1/8 of its length after it was due.
pub const MAX_TIMER_LATENESS: f64 = 1.125;

/// How long a connect() waits for an answer before ETIMEDOUT. The SYN timer starts at
/// TCP_TIMEOUT_INIT (1 s) and stays there for `linear_timeouts` retransmits
/// (net.ipv4.tcp_syn_linear_timeouts, 6.5+; 0 on older kernels), then doubles. The kernel
/// gives up at the first firing where the retransmits reach `syn_retries + linear_timeouts`
/// or the time reaches tcp_model_timeout(syn_retries, 1 s).
///
/// syn_retries 6: 127 s without linear timeouts, 131 s with the default 4.
pub fn connect_timeout_ms(syn_retries: u8, linear_timeouts: u8) -> u64 {
    let budget = retries_budget_ms(u32::from(syn_retries), TIMEOUT_INIT_MS);
    let max_retransmits = u32::from(syn_retries) + u32::from(linear_timeouts);
    let (mut t, mut rto, mut retransmits) = (0, TIMEOUT_INIT_MS, 0u32);
    // Bounded by max_retransmits (≤ 510) iterations.
    loop {
        t += rto;
        if retransmits >= max_retransmits || t >= budget {
            return t;
        }
        retransmits += 1;
        if retransmits > u32::from(linear_timeouts) {
            rto = (rto * 2).min(RTO_MAX_MS);
        }
    }
}

/// Idle connection with keepalive: idle time, then `probes` unanswered probes `intvl`
/// apart; the kernel gives up when the next probe would exceed the count.
/// Defaults (7200 s, 75 s, 9) → 7875 s.
pub fn keepalive_detection_ms(idle_ms: u64, intvl_ms: u64, probes: u8) -> u64 {
    idle_ms + u64::from(probes) * intvl_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries2_default_is_924_6_seconds() {
        assert_eq!(retries_budget_ms(15, RTO_MIN_MS), 924_600);
        // Below the linear threshold: (2^(n+1) - 1) × base.
        assert_eq!(retries_budget_ms(3, RTO_MIN_MS), 3_000);
        assert_eq!(retries_budget_ms(8, RTO_MIN_MS), 102_200);
        assert_eq!(data_give_up_budget_ms(15, 5_000), 5_000);
    }

    #[test]
    fn syn_and_keepalive_budgets_match_the_kernel_defaults() {
        assert_eq!(connect_timeout_ms(6, 0), 127_000);
        assert_eq!(connect_timeout_ms(6, 4), 131_000);
        // Seen on 6.18 with TCP_SYNCNT=2: five 1 s timeouts, then 2 s: gives up at 7 s.
        assert_eq!(connect_timeout_ms(2, 4), 7_000);
        assert_eq!(connect_timeout_ms(2, 0), 7_000);
        assert_eq!(keepalive_detection_ms(7_200_000, 75_000, 9), 7_875_000);
    }

    #[test]
    fn give_up_happens_at_the_first_rto_past_the_budget() {
        // retries2=3 (3 s budget), RTO 200 ms: fires at 0.2, 0.6, 1.4, 3.0 → gives up at 3.0
        // when the first retransmit was at 0.2 (budget ends 3.2) → next fire 6.2.
        assert_eq!(rto_schedule(0, 200, 4), vec![200, 600, 1400, 3000]);
        assert_eq!(predicted_give_up_ms(200, 3_000, 1400, 1600, 1.0), 6_200);
        assert_eq!(predicted_give_up_ms(0, 3_000, 1400, 1600, 1.0), 3_000);
    }

    #[test]
    fn data_give_up_follows_the_backoff_or_the_user_timeout() {
        // Defaults: RTO 200 ms from the first retransmit at 0.2 s, doubling to 120 s; the
        // budget (924.6 s) ends at 924.8 s, after the firing at 924.6 s: the give-up is the
        // next firing, 120 s later. Seen from the third retransmit (1.4 s, RTO 800 ms).
        assert_eq!(
            predicted_data_give_up_ms(200, 924_600, false, 1_400, 800, 1.0),
            1_044_600
        );
        // TCP_USER_TIMEOUT: the timer is clamped to the deadline.
        assert_eq!(
            predicted_data_give_up_ms(200, 5_000, true, 1_400, 800, 1.0),
            5_200
        );
        // Already past it: the clamped timer fires at once.
        assert_eq!(
            predicted_data_give_up_ms(200, 1_000, true, 1_400, 800, 1.0),
            1_400
        );
        // An RTO below the kernel's minimum (or missing) is taken as TCP_RTO_MIN.
        assert_eq!(
            predicted_data_give_up_ms(200, 3_000, false, 200, 0, 1.0),
            predicted_data_give_up_ms(200, 3_000, false, 200, 200, 1.0)
        );
    }
}
