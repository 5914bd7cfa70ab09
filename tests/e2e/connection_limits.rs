//! Connection limits: idle and slow connections are closed, connections are capped in total
//! and per client address, real-time sockets per user, and a declared body over the limit is
//! refused before it is read.
