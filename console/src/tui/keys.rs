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

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Freeze the charts (collection pauses too).
    TogglePause,
    ToggleHelp,
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
        KeyCode::Char('l') => Action::ToggleLoad,
        KeyCode::Char('+') => Action::Faster,
        KeyCode::Char('-') => Action::Slower,
        KeyCode::Char('r') => Action::RunDrill,
        KeyCode::Char('x') => Action::AbortDrill,
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
