/* dlib's serialized shape predictor, then a prediction on a small image (tree splits and anchors used). */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftShapePredictor *sp = oft_shape_predictor_load (fuzz_write ("sp.dat", data, size), &error);
  if (!sp)
    {
      fuzz_clear (&error);
      return 0;
    }
  OftImage *img = oft_image_new (24, 20, 1);
  for (int i = 0; i < 24 * 20; i++)
    img->pixels[i] = (uint8_t) (i * 29);
  OftFaceBox box = { 2, 3, 15, 14 };
  double *pts = g_new (double, 2 * (size_t) oft_shape_predictor_num_parts (sp) + 1);
  if (!oft_shape_predict (sp, img, box, pts, NULL, &error))
    fuzz_clear (&error);
  g_free (pts);
  oft_image_free (img);
  oft_shape_predictor_free (sp);
  return 0;
}
