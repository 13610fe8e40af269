pub mod inbox;
pub mod orgs;
pub mod projects;
pub mod tags;
pub mod tasks;
