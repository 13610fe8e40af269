//! The notifications projection's ids.

use tasklog_projectors::projections::notification_id;
use uuid::Uuid;

#[test]
fn a_notification_id_is_the_same_for_the_same_cause_and_recipient() {
    let (cause, user) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(notification_id(cause, user), notification_id(cause, user));
    assert_ne!(
        notification_id(cause, user),
        notification_id(cause, Uuid::now_v7())
    );
}
