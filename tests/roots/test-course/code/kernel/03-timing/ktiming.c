/* ktiming.c - a canned module */
int init_module(void) { return 0; }
