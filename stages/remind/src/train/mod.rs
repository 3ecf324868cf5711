//! Training machinery shared by the streaming loops: optimisers with checkpointable state.

pub mod optim;
