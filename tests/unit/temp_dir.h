/*
 * temp_dir: for unit tests that write files: removes a test's folder and
 * everything below it (files, folders, links, without following links).
 */
#ifndef DPS_TESTS_TEMP_DIR_H
#define DPS_TESTS_TEMP_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int temp_dir_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* 0, or -1 when something could not be removed. */
static inline int temp_dir_remove(const char *path)
{
    return nftw(path, temp_dir_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
