//! Given/when/then helper for aggregate tests.

use crate::{Aggregate, DomainError};

/// Starts a test from the state the given events produce.
pub(crate) fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given {
        state: crate::replay::<A>(events),
    }
}

/// A state ready to receive a command.
pub(crate) struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` against the given state.
    pub(crate) fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.decide(command);
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of a decision, to assert on.
pub(crate) struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, DomainError>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts the command produced exactly `expected`; returns the state after applying them.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "unexpected events");
                events
                    .iter()
                    .fold(self.state, |state, event| state.evolve(event))
            }
            Err(error) => panic!("expected events {expected:?}, got error {error:?}"),
        }
    }

    /// Asserts the command was refused with `expected`.
    #[track_caller]
    pub(crate) fn then_err(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
            Err(error) => assert_eq!(error, expected, "unexpected error"),
        }
    }
}
