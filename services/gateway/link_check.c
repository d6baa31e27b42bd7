/*
 * An empty program, linked with one gateway layer whole (every object of
 * its static library) and only the layers below it: if the layer calls
 * anything above it, this fails to link.
 */
int
main(void)
{
	return (0);
}
