/*
 * file: reading a whole small file into memory, the one way every layer
 * does it (certificates, keys, chains, CRLs, JWKS, tokens); and the check
 * of the folders dpsd keeps its keys and data in.
 *
 * Errors follow the base layer's convention: NULL (or -1) with a sentence
 * naming the file and the reason in err.
 */
#ifndef DPS_COMMON_FILE_H
#define DPS_COMMON_FILE_H

#include <stddef.h>

/*
 * The file's bytes with a terminating NUL (length in *length when not
 * NULL), or NULL with "cannot read FILE: reason" or "FILE is larger than N
 * bytes" in err. A file that holds more than limit bytes is refused, never
 * cut. The caller frees the text (file_free_secret for key material).
 */
char *file_read_text(const char *path, size_t limit, size_t *length, char *err, size_t err_length);

/* Wipes then frees text read from a key file (NULL is fine). */
void file_free_secret(char *text);

/*
 * Creates folder with mode 0700 when it does not exist (its parent must),
 * and refuses a folder that group or others may write to (they could swap
 * what dpsd reads or writes there). 0, or -1 with the folder, its mode and
 * the fix in err.
 */
int file_private_dir(const char *folder, char *err, size_t err_length);

/* file_private_dir() without creating: checks the folder a file is in. */
int file_check_dir_of(const char *path, char *err, size_t err_length);

#endif
