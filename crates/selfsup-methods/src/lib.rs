pub mod loss;
pub mod optim;
pub mod simclr;
