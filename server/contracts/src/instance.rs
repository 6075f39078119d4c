//! How an instance of a scaled part is named: the first by its kind alone (`producer`,
//! `kafka`), the others numbered from 2 (`producer-2`, `kafka-3`). `logctl` names processes
//! this way and the gateway names its per-producer breakers this way, so a breaker metric's
//! `name` label is the component it guards.

/// The name of instance `index` (from 0) of `kind`.
pub fn name(kind: &str, index: u16) -> String {
    match index {
        0 => kind.to_owned(),
        i => format!("{kind}-{}", u32::from(i) + 1),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_instance_is_unnumbered_the_others_count_from_two() {
        assert_eq!(super::name("producer", 0), "producer");
        assert_eq!(super::name("producer", 1), "producer-2");
        assert_eq!(super::name("kafka", 2), "kafka-3");
    }
}
