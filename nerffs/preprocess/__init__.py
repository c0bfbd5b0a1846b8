"""Face front end: robust image loading, 68-point landmarks and FFHQ-style alignment with paste-back.

Typical use::

    from nerffs.preprocess import AlignConfig, DlibLandmarks, align_face, load_image, paste_back

    photo = load_image("portrait.jpg")                     # [H, W, 3] uint8, EXIF orientation applied
    face = DlibLandmarks().detect(photo)                   # the best ranked face; face_index=... picks another
    aligned = align_face(photo, face, AlignConfig(output_size=512))
    ...                                                     # render in the aligned frame
    composite = paste_back(photo, rendered, aligned)       # [H, W, 3] uint8
"""
from nerffs.errors import MissingDependencyError, TinyFaceError
from nerffs.preprocess.align import (AlignConfig, AlignedFace, align_face, align_photo, apply_affine, ffhq_quad,
                                     paste_back)
from nerffs.preprocess.image import from_tensor, load_image, to_tensor
from nerffs.preprocess.landmarks import (DlibConfig, DlibLandmarks, FaceLandmarks, FanConfig, FanLandmarks,
                                         LandmarkDetector, create_detector, detect_all, detect_landmarks)

__all__ = [
    "AlignConfig", "AlignedFace", "DlibConfig", "DlibLandmarks", "FaceLandmarks", "FanConfig", "FanLandmarks",
    "LandmarkDetector", "MissingDependencyError", "TinyFaceError", "align_face", "align_photo", "apply_affine",
    "create_detector", "detect_all", "detect_landmarks", "ffhq_quad", "from_tensor", "load_image", "paste_back",
    "to_tensor",
]
