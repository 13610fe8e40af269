pub mod directory;
pub mod notifications;
pub mod projects;
pub mod reports;
pub mod tasks;
