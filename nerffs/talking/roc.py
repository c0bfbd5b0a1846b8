"""Region of change: the final pass of a fixed camera re-renders only what the frame changes, exactly.

For a camera that holds still, :class:`FixedView` keeps the undeformed render of the identity: every sample
point (fixed depths), its nearest control point, the NeRF MLP's output at every sample, the composited
feature map and the upsampled image. A frame then changes only

* the samples whose nearest control point moves (non-zero displacement): only they are evaluated again, at
  their displaced positions, and only the rays holding one are composited again (the rest of the feature map
  is the cached one; samples of a ray are independent of other rays);
* the feature cells the mouth blend touches (applied to the whole map, it is cheap);
* the upsampled pixels those cells can reach: the upsampler runs on a crop around the changed cells, widened
  by twice its reach (``upsample_radius``), and only the part whose inputs lie inside the crop is pasted into
  the cached image.

Every step computes what the full pass computes for those pixels (same functions, same order of operations on
each ray), so frames equal the full pass up to float rounding (tested to 1e-4). Moving cameras (orbit,
keyframes, driving poses, head motion by camera) take the full path.
"""
from __future__ import annotations

import torch

from nerffs.deform.knn import nearest_indices
from nerffs.utils.timing import NO_TIMER, StageTimer
from stylenerf import volume_renderer as vr
from stylenerf.camera import generate_rays
from stylenerf.generator import NeRFSynthesisNetwork, SampleDepths


def supports_region_of_change(synthesis: NeRFSynthesisNetwork) -> bool:
    """True when every ray's features depend on that ray's samples alone (not with the official
    ``normalized_feat`` quirk, which normalises across the image) and the upsampler declares its reach."""
    return not getattr(synthesis.cfg.nerf, "normalized_feat", False) and hasattr(synthesis, "upsample_radius")


class FixedView:
    """The cached undeformed render of one camera and the incremental final pass for it.

    Args:
        synthesis: the generator's synthesis network.
        cam2world: [1, 4, 4] the camera.
        ws: [1, num_ws, w_dim] identity styles; bg_feat: [1, P, 3 + F] cached background.
        depths: the reference's fixed coarse and fine sample depths [1, P, S].
        controls: [1, N, 2] reference control points (world matching), or None with ``indices``.
        indices: {'coarse', 'fine'} -> [P * S] nearest control point per sample (official matching).
    """

    @torch.inference_mode()
    def __init__(self, synthesis: NeRFSynthesisNetwork, cam2world: torch.Tensor, ws: torch.Tensor,
                 bg_feat: torch.Tensor, depths: SampleDepths, controls: torch.Tensor | None = None,
                 indices: dict[str, torch.Tensor] | None = None) -> None:
        if depths.fine is None:
            raise ValueError("the region of change needs fixed fine depths (a hierarchical renderer)")
        cfg = synthesis.cfg
        self.synthesis, self.cam, self.ws, self.bg_feat = synthesis, cam2world.clone(), ws, bg_feat
        rays = generate_rays(cam2world, cfg.resolution_vol, cfg.img_resolution, cfg.camera.fov,
                             cfg.camera.ray_align_corner)
        self.ray_norm = rays.directions.norm(dim=-1)                             # [1, P]
        self.p, self.s = depths.coarse.shape[1:]
        self.depth = {"coarse": depths.coarse, "fine": depths.fine}
        self.points, self.sigma, self.out, self.index = {}, {}, {}, {}
        for stage, di in self.depth.items():
            pts = rays.at(vr.to_world_depth(di, cfg.camera.depth_range))       # [1, P*S, 3]
            sigma, out = synthesis.fg_nerf(pts, ws, grid=(cfg.resolution_vol, cfg.resolution_vol, self.s))
            self.points[stage] = pts[0]
            self.sigma[stage] = sigma.reshape(self.p, self.s)
            self.out[stage] = out.reshape(self.p, self.s, -1)
            self.index[stage] = (indices[stage].to(pts.device) if indices is not None
                                 else nearest_indices(pts[:, :, 1:], controls[:1].to(pts.dtype))[0])
        self.feat0 = self._composite(torch.arange(self.p, device=ws.device))      # [P, 3 + F]
        rv = cfg.resolution_vol
        self.map0 = self.feat0.T.reshape(1, -1, rv, rv)                           # [1, 3 + F, Rv, Rv]
        self.img0 = synthesis.upsample(self.map0[:, 3:], self.map0[:, :3], ws)

    def matches(self, cam2world: torch.Tensor) -> bool:
        return torch.equal(cam2world.reshape(4, 4), self.cam.reshape(4, 4))

    def _composite(self, rays: torch.Tensor, sigma: dict | None = None, out: dict | None = None) -> torch.Tensor:
        """Features [len(rays), 3 + F] of the given rays, as ``render_nerf`` composites them."""
        sigma, out = sigma or self.sigma, out or self.out
        pick = lambda t: t[rays][None]  # noqa: E731
        di_all, sig_all, out_all = vr.merge_samples(
            self.depth["fine"][0, rays][None], pick(sigma["fine"]), pick(out["fine"]),
            self.depth["coarse"][0, rays][None], pick(sigma["coarse"]), pick(out["coarse"]))
        weights, bg_lambda = vr.volume_weights(sig_all, vr.to_world_depth(di_all, self.synthesis.cfg.camera.depth_range),
                                               self.ray_norm[:, rays])
        fg = vr.integrate(weights, out_all)
        return (fg + bg_lambda.unsqueeze(-1) * self.bg_feat[:, rays])[0]

    @torch.inference_mode()
    def render(self, displacement: torch.Tensor, feature_hook=None, timer: StageTimer = NO_TIMER) -> torch.Tensor:
        """One frame: control-point displacements [N, 2] (reference - driven) -> image [1, 3, R, R].

        ``feature_hook`` edits the [1, F, Rv, Rv] feature map before the upsampler (the mouth blend).
        """
        with timer("nerf"):
            x, img_nerf = self._features(displacement)
        if feature_hook is not None:
            x = feature_hook(x)
        with timer("upsampler"):
            changed = (x != self.map0[:, 3:]).any(dim=1)[0] | (img_nerf != self.map0[:, :3]).any(dim=1)[0]
            if not bool(changed.any()):
                return self.img0.clone()
            return self._upsample_changed(x, img_nerf, changed)

    def _features(self, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map [1, F, Rv, Rv] and NeRF RGB [1, 3, Rv, Rv] of the deformed frame (moving samples only)."""
        moving = (displacement != 0).any(dim=-1)                                  # [N]
        mask = {st: moving[self.index[st]].reshape(self.p, self.s) for st in self.depth}
        rays = (mask["coarse"] | mask["fine"]).any(dim=-1).nonzero()[:, 0]
        feat = self.feat0
        if len(rays):
            sigma, out = {}, {}
            for stage in self.depth:
                sigma[stage], out[stage] = self.sigma[stage].clone(), self.out[stage].clone()
                sel = mask[stage][rays].nonzero()                                # [M, 2] (ray row, step)
                if len(sel):
                    flat = rays[sel[:, 0]] * self.s + sel[:, 1]
                    pts = self.points[stage][flat]
                    moved = torch.cat([pts[:, :1], pts[:, 1:] + displacement[self.index[stage][flat]].to(pts.dtype)],
                                      dim=-1)
                    sg, o = self.synthesis.fg_nerf(moved[None], self.ws)
                    sigma[stage][rays[sel[:, 0]], sel[:, 1]] = sg[0, :, 0]
                    out[stage][rays[sel[:, 0]], sel[:, 1]] = o[0]
            feat = self.feat0.clone()
            feat[rays] = self._composite(rays, sigma, out)
        rv = self.synthesis.cfg.resolution_vol
        fmap = feat.T.reshape(1, -1, rv, rv)
        return fmap[:, 3:], fmap[:, :3]

    def _upsample_changed(self, x: torch.Tensor, img_nerf: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        """The cached image with the pixels the changed cells [Rv, Rv] reach upsampled again from a crop."""
        rv = changed.shape[0]
        scale = self.img0.shape[-1] // rv
        reach = self.synthesis.upsample_radius()
        rows, cols = changed.nonzero(as_tuple=True)
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        cy0, cy1, cx0, cx1 = max(0, y0 - 2 * reach), min(rv, y1 + 2 * reach), max(0, x0 - 2 * reach), \
            min(rv, x1 + 2 * reach)
        py0, py1, px0, px1 = max(0, y0 - reach), min(rv, y1 + reach), max(0, x0 - reach), min(rv, x1 + reach)
        crop = self.synthesis.upsample(x[..., cy0:cy1, cx0:cx1], img_nerf[..., cy0:cy1, cx0:cx1], self.ws)
        img = self.img0.clone()
        img[..., py0 * scale:py1 * scale, px0 * scale:px1 * scale] = crop[
            ..., (py0 - cy0) * scale:(py1 - cy0) * scale, (px0 - cx0) * scale:(px1 - cx0) * scale]
        return img
