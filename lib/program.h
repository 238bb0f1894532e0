/*
 * The embedded kernel sources, generated from cl/ by cl/embed.py.
 */
#ifndef CLATTN_PROGRAM_H
#define CLATTN_PROGRAM_H

typedef struct clattn_source {
    const char *name; /* file name without .cl */
    const char *text;
} clattn_source;

/* Terminated by an entry whose name is NULL. */
extern const clattn_source clattn_sources[];

#endif /* CLATTN_PROGRAM_H */
