//! Each plugin call's deadline, kept without reading a clock: the engine's
//! epoch ticks every `EPOCH_TICK`, and a call may run through as many
//! ticks as its deadline covers, plus one.

use std::time::Duration;

use wasmtime::Store;

use super::capabilities::HostState;

/// Arm the deadline for one call. No clock is read: the epoch callback
/// counts the ticks the call runs through.
pub(super) fn begin_call(store: &mut Store<HostState>, deadline: Duration, slot: Option<usize>) {
    let data = store.data_mut();
    data.ticks_left = deadline_ticks(deadline);
    data.slot = slot;
    data.outbound_calls = 0;
    store.set_epoch_deadline(1);
}

/// Ticks to allow for `deadline`. The first tick of a call comes anywhere
/// from 0 to one tick after it starts, so one more is allowed: a call is
/// never cut short, and overruns by at most one tick.
fn deadline_ticks(deadline: Duration) -> u32 {
    let tick = super::engine::EPOCH_TICK.as_millis() as u64;
    let millis = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    let ticks = millis.div_ceil(tick).saturating_add(1);
    u32::try_from(ticks).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks_plus_one() {
        let tick = crate::engine::EPOCH_TICK;
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(tick), 2);
        assert_eq!(deadline_ticks(tick * 20), 21);
        assert_eq!(deadline_ticks(tick * 20 + Duration::from_millis(1)), 22);
        assert_eq!(deadline_ticks(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
