//! mitogen
