pub mod loss;
pub mod optim;
