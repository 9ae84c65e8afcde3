/* Shared inside oftcore/conditions. */
#pragma once

/* The installed data folder (prefix/datadir/gimp-oft) and the source tree's data/, from meson. */
extern const char oft_data_installed_dir[];
extern const char oft_data_source_dir[];
