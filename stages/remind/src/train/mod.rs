//! Training machinery shared by every stage that trains: optimisers with checkpointable
//! state ([`optim`]) and learning-rate schedules ([`schedule`]).

pub mod optim;
pub mod schedule;
