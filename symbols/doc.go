// Package symbols answers questions about executable files: which functions
// an ELF file defines, and which file a path names (device and inode), so
// that probes are attached once per file however many processes map it.
package symbols
