//! The console's keys, each mapped to one [`Action`]: the mapping is a pure function of the
//! key, so it is unit-tested here, and what an action does lives in one place
//! (`Console::apply` in the parent module).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::stack::Component;

/// Keys 1..6 stop or start these.
pub const FAULT_KEYS: [(char, Component); 6] = [
    ('1', Component::Kafka(0)),
    ('2', Component::Postgres),
    ('3', Component::Redis),
    ('4', Component::Producer(0)),
    ('5', Component::Consumer(0)),
    ('6', Component::Gateway(0)),
];

/// A network fault a key puts on a link, or takes off it (on a stack with the fault proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkKey {
    pub key: char,
    /// The link, as `logctl fault` names it (`kafka` is every broker's).
    pub link: &'static str,
    pub kind: crate::fault::link::Kind,
    pub amount: Option<&'static str>,
    /// What it does, for the help screen.
    pub label: &'static str,
}

/// Shift and a letter: each sets its fault, or clears the link when it has one.
pub const LINK_KEYS: [LinkKey; 4] = {
    use crate::fault::link::Kind;
    [
        LinkKey {
            key: 'K',
            link: "kafka",
            kind: Kind::Latency,
            amount: Some("200ms"),
            label: "200 ms on every broker's link",
        },
        LinkKey {
            key: 'P',
            link: "postgres",
            kind: Kind::Bandwidth,
            amount: Some("1mbit"),
            label: "PostgreSQL's link at 1 Mbit/s",
        },
        LinkKey {
            key: 'R',
            link: "redis",
            kind: Kind::Blackhole,
            amount: None,
            label: "Redis's link black-holed",
        },
        LinkKey {
            key: 'G',
            link: "producer",
            kind: Kind::Blackhole,
            amount: None,
            label: "the gateway cut from its producers",
        },
    ]
};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Freeze the charts (collection pauses too).
    TogglePause,
    ToggleHelp,
    /// The charts' window: 1, 5, 15 minutes, around again.
    CycleWindow,
    /// Start background load, or stop it.
    ToggleLoad,
    /// Double the load's rate.
    Faster,
    /// Halve it.
    Slower,
    /// Run the next drill given with `--scenario`.
    RunDrill,
    /// Interrupt the running drill (it restores the stack).
    AbortDrill,
    /// Stop the component if it runs, start it if not.
    ToggleComponent(Component),
    /// Set `LINK_KEYS[i]`'s fault, or clear its link if it has a fault.
    ToggleLink(usize),
    /// Clear every link's faults.
    ClearLinks,
    /// On a stack on hosts: cut the leading broker off, or heal every host if one is cut.
    ToggleIsolation,
}

/// The action of a key press; None for releases, repeats of nothing, and unbound keys.
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('w') => Action::CycleWindow,
        KeyCode::Char('l') => Action::ToggleLoad,
        KeyCode::Char('+') => Action::Faster,
        KeyCode::Char('-') => Action::Slower,
        KeyCode::Char('r') => Action::RunDrill,
        KeyCode::Char('x') => Action::AbortDrill,
        KeyCode::Char('C') => Action::ClearLinks,
        KeyCode::Char('I') => Action::ToggleIsolation,
        KeyCode::Char(k) if k.is_ascii_uppercase() => {
            Action::ToggleLink(LINK_KEYS.iter().position(|l| l.key == k)?)
        }
        KeyCode::Char(k) => {
            let (_, c) = FAULT_KEYS.iter().find(|(key, _)| *key == k)?;
            Action::ToggleComponent(*c)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn key(c: char) -> Option<Action> {
        action(&press(KeyCode::Char(c), KeyModifiers::NONE))
    }

    #[test]
    fn each_key_its_action() {
        assert_eq!(key('q'), Some(Action::Quit));
        assert_eq!(
            action(&press(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            action(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(key('c'), None, "c alone is not Ctrl-C");
        assert_eq!(key('p'), Some(Action::TogglePause));
        assert_eq!(key('?'), Some(Action::ToggleHelp));
        assert_eq!(key('w'), Some(Action::CycleWindow));
        assert_eq!(key('l'), Some(Action::ToggleLoad));
        assert_eq!(key('+'), Some(Action::Faster));
        assert_eq!(key('-'), Some(Action::Slower));
        assert_eq!(key('r'), Some(Action::RunDrill));
        assert_eq!(key('x'), Some(Action::AbortDrill));
        assert_eq!(key('3'), Some(Action::ToggleComponent(Component::Redis)));
        assert_eq!(
            key('5'),
            Some(Action::ToggleComponent(Component::Consumer(0)))
        );
        assert_eq!(key('K'), Some(Action::ToggleLink(0)));
        assert_eq!(key('G'), Some(Action::ToggleLink(3)));
        assert_eq!(key('C'), Some(Action::ClearLinks));
        assert_eq!(key('I'), Some(Action::ToggleIsolation));
        assert_eq!(key('Z'), None);
        assert_eq!(key('7'), None);
        assert_eq!(key('z'), None);
    }

    #[test]
    fn only_presses_count() {
        let mut release = press(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(&release), None);
    }

    #[test]
    fn every_link_key_names_a_link_and_a_valid_fault() {
        for k in LINK_KEYS {
            assert!(
                crate::fault::link::Links::parse(k.link).is_ok(),
                "{}",
                k.link
            );
            let words = crate::fault::link::Words {
                value: k.amount,
                ..Default::default()
            };
            assert!(
                crate::fault::link::fault(k.kind, &words).is_ok(),
                "{}",
                k.key
            );
            assert!(
                super::super::view::HELP
                    .iter()
                    .any(|l| l.starts_with(k.key) && l.contains(k.label)),
                "{} is not in the help",
                k.key
            );
        }
    }

    #[test]
    fn the_help_screen_lists_every_fault_key() {
        for (k, c) in FAULT_KEYS {
            assert!(
                super::super::view::HELP
                    .iter()
                    .any(|l| l.contains(k) && l.contains(&c.name())),
                "{k} {}",
                c.name()
            );
        }
    }
}
