/* Shim over the BLAKE3 reference C implementation (built from Debian's librust-blake3-dev sources by
   NanoKv.Core.csproj): the managed side allocates the hasher state, so it asks for its size here rather than
   hard-coding a layout that could change with the library version. */
#include "blake3.h"
#include <stddef.h>

size_t nanokv_blake3_hasher_size(void) { return sizeof(blake3_hasher); }
