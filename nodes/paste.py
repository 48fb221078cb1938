"""PasteBack: face crops (after any restorer or upscaler) pasted back into their source.

RenderPortrait and DubVideo give their crops (paste_back off) and a JOYVASA_PASTE
(:class:`joyvasa_core.placement.Placement`); anything that keeps the crops
square and in order may sit between. Node IDs and input names are part of
saved workflows: never rename them.
"""
from __future__ import annotations

import comfy.model_management as mm

from joyvasa_core.host_memory import check_frame_batch
from joyvasa_core.placement import check_crops, paste_crops
from joyvasa_core.video import even_size
from . import convert
from .api import CATEGORY, Paste, io
from .progress import progress_bar


class JoyVASAPasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAPasteBack",
            display_name="PasteBack",
            category=CATEGORY,
            description="Pastes face crops back into the photo, or each into its own frame of "
                        "a dubbed video. Put a face restorer or an upscaler between "
                        "RenderPortrait or DubVideo (paste_back off) and this node: crops of "
                        "any square size paste back at their full sharpness.",
            inputs=[
                io.Image.Input("images", tooltip="the face crops, in order: 512x512 from the "
                                                 "render, or any square size after an upscaler"),
                Paste.Input("paste", tooltip="the paste output of the RenderPortrait or "
                                             "DubVideo that rendered the crops"),
                io.Int.Input("batch_size", default=16, min=1, max=256,
                             tooltip="frames pasted at once (memory vs speed)"),
                io.Image.Input("background", optional=True,
                               tooltip="paste into these frames instead of the source (one "
                                       "image, or one per crop): chain one PasteBack per face"),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, images, paste, batch_size, background=None) -> io.NodeOutput:
        check_crops(paste, images, background)
        n = int(images.shape[0])
        height, width = paste.size if background is None else background.shape[1:3]
        check_frame_batch(n, *even_size(height, width), what="PasteBack's images",
                          fix="paste fewer frames at a time (a shorter clip), or write long "
                              "clips with RenderToFile or DubVideoToFile")
        progress = progress_bar(n)
        frames = paste_crops(paste, images, batch_size=batch_size,
                             device=mm.get_torch_device(), background=background)
        return io.NodeOutput(convert.collect_frames(progress.counting(frames), n))


NODES = [JoyVASAPasteBack]
