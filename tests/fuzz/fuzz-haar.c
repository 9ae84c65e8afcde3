/* OpenCV's Haar cascade XML, then a detection on a small gray image (trees and rectangles used). */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftHaarCascade *h = oft_haar_load (fuzz_write ("cascade.xml", data, size), &error);
  if (!h)
    {
      fuzz_clear (&error);
      return 0;
    }
  enum { W = 48, H = 40 };
  static uint8_t gray[W * H];
  for (int i = 0; i < W * H; i++)
    gray[i] = (uint8_t) ((i * 37) ^ (i / W * 11));
  OftHaarParams p;
  oft_haar_params_init (&p);
  p.min_w = p.min_h = 1;
  p.min_neighbors = 0;
  OftFaceBox *boxes = NULL;
  if (oft_haar_detect (h, gray, W, H, &p, &boxes, &error) < 0)
    fuzz_clear (&error);
  g_free (boxes);
  oft_haar_free (h);
  return 0;
}
