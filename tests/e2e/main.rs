mod conversations;
mod crm_sink;
mod emulator_load;
mod emulator_org;
mod emulator_platform;
mod simulator;
mod support;
mod token;
