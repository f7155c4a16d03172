// Package guest holds the test that runs inside the qemu guests of
// test/kernels (guest_test.go, built only with the kernelguest tag: on this
// machine it has nothing to do). See test/kernels.
package guest
