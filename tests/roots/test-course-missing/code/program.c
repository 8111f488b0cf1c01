/* program.c - a canned source whose hash the canned results record */
int main(void) { return 0; }
