/* the solution of the canned exercise */
int main(void) { return 0; }
