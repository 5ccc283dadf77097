/*
 * temp_dir: for unit tests that write files: removes a test's folder and
 * everything below it (files, folders, links, without following links). Include after cmocka.h.
 */
#ifndef DPS_TESTS_TEMP_DIR_H
#define DPS_TESTS_TEMP_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* A cmocka fixture that is a fresh folder, removed with all it holds at teardown. */
struct temp_dir {
    char dir[64];
};

/* template ends in XXXXXX (mkdtemp) and fits struct temp_dir. */
__attribute__((unused)) static int temp_dir_setup(void **state, const char *template)
{
    struct temp_dir *fixture = calloc(1, sizeof(*fixture));
    if (fixture == NULL)
        return -1;
    snprintf(fixture->dir, sizeof(fixture->dir), "%s", template);
    if (mkdtemp(fixture->dir) == NULL) {
        free(fixture);
        return -1;
    }
    *state = fixture;
    return 0;
}

__attribute__((unused)) static int temp_dir_teardown(void **state)
{
    struct temp_dir *fixture = *state;
    temp_dir_remove(fixture->dir);
    free(fixture);
    return 0;
}

/* A test case with the file's fixture: its functions setup and teardown around it. */
#define FIXTURE_TEST(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

#endif
