/* annot_cli_tests.h - the cases of test_annot_cli.c (cli.c's connection and
 * answer buffer, line mode), listed in test_annot.c's main: one executable. */
#ifndef REGENT_TEST_ANNOT_CLI_TESTS_H
#define REGENT_TEST_ANNOT_CLI_TESTS_H

void test_conn(void **state);
void test_cli_spare(void **state);
void test_cli_lines(void **state);
void test_poll_slow_answer(void **state);

#endif
