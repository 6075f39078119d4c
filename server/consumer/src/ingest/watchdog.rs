//! When is a quiet Kafka client stalled rather than idle? A client can stop fetching without
//! any error (a missed wake-up, a coordinator connection that wedged after a broker restart),
//! and the only cure is a new client; these rules decide, from what the source can see, when
//! to make one. Pure, so each case is a unit test.

use std::time::Duration;

/// Is a consumer that has received nothing for `quiet` stalled? Only if it is not paused on
/// purpose and Kafka holds records for its partitions that it has not read.
pub fn is_stalled(paused: bool, quiet: Duration, stall_after: Duration, own_lag: i64) -> bool {
    !paused && quiet >= stall_after && own_lag > 0
}

/// Is a quiet consumer left without partitions while the group has lag? After a broker
/// restart a client can fail to rejoin and sit with an empty assignment: its own lag is then
/// zero, so [`is_stalled`] cannot see it. Confirmed against the group's size before acting (an
/// instance beyond the partition count is idle on purpose).
pub fn is_orphaned(
    paused: bool,
    quiet: Duration,
    stall_after: Duration,
    assigned: usize,
    group_lag: i64,
) -> bool {
    !paused && quiet >= stall_after && assigned == 0 && group_lag > 0
}

/// Is an orphaned consumer (see [`is_orphaned`]) to be recreated? When the group has fewer
/// members than partitions, yes. When the group's size cannot be read at all, the client may
/// be wedged (seen after a broker restart on a loaded machine: its coordinator requests sit in
/// the out-queue for good), so past three stall periods, yes too: a new client joining is
/// harmless, and an idle spare instance only rejoins.
pub fn orphan_confirmed(
    fewer_members: Option<bool>,
    quiet: Duration,
    stall_after: Duration,
) -> bool {
    fewer_members.unwrap_or(quiet >= stall_after * 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_when_quiet_with_own_lag_and_not_paused() {
        let after = Duration::from_secs(20);
        assert!(is_stalled(false, Duration::from_secs(21), after, 5));
        assert!(
            !is_stalled(false, Duration::from_secs(21), after, 0),
            "nothing to read"
        );
        assert!(
            !is_stalled(true, Duration::from_secs(21), after, 5),
            "paused on purpose"
        );
        assert!(
            !is_stalled(false, Duration::from_secs(19), after, 5),
            "not quiet long enough"
        );
    }

    #[test]
    fn an_orphan_is_recreated_when_the_group_is_short_or_cannot_be_asked_for_long() {
        let after = Duration::from_secs(20);
        let quiet = Duration::from_secs(25);
        assert!(orphan_confirmed(Some(true), quiet, after));
        assert!(
            !orphan_confirmed(Some(false), Duration::from_secs(600), after),
            "a spare instance"
        );
        assert!(
            !orphan_confirmed(None, quiet, after),
            "not yet: the coordinator may be busy"
        );
        assert!(orphan_confirmed(None, Duration::from_secs(60), after));
    }

    #[test]
    fn orphaned_only_without_partitions_while_the_group_lags() {
        let after = Duration::from_secs(20);
        let quiet = Duration::from_secs(25);
        assert!(is_orphaned(false, quiet, after, 0, 7));
        assert!(!is_orphaned(false, quiet, after, 2, 7), "has partitions");
        assert!(
            !is_orphaned(false, quiet, after, 0, 0),
            "nothing to read anywhere"
        );
        assert!(!is_orphaned(true, quiet, after, 0, 7), "paused on purpose");
        assert!(
            !is_orphaned(false, Duration::from_secs(5), after, 0, 7),
            "not quiet long enough"
        );
    }
}
