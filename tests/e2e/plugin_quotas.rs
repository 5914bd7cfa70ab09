//! Tenant plugins under pressure: quotas per tenant, compiled code freed on delete, one
//! tenant's uploads do not slow another tenant's submits.
