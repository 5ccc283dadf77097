/*
 * loadgen_merge: dps-loadgen merge [--report OUT.json] A.json B.json ...
 * combines the reports of generators that ran at the same time
 * (loadgen_merge.c).
 */
#ifndef DPS_LOADGEN_MERGE_H
#define DPS_LOADGEN_MERGE_H

/* Returns the exit status. */
int merge_main(int argc, char **argv);

#endif
