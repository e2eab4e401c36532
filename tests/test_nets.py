"""The shared ResNet-18 builder: each stem's geometry, and local weights loaded before the head is swapped."""
import pytest
import torch

from kdal_lib.nets import resnet18_net


@pytest.mark.parametrize("stem, kernel, stride, pooled", [("imagenet", 7, 2, True), ("cifar", 3, 1, False),
                                                          ("stride2", 3, 2, False), ("stride1", 7, 1, True)])
def test_stems(stem, kernel, stride, pooled):
    net = resnet18_net(1, 5, stem).eval()
    assert net.conv1.in_channels == 1 and net.conv1.kernel_size == (kernel, kernel) and net.conv1.stride == (stride, stride)
    assert isinstance(net.maxpool, torch.nn.MaxPool2d) == pooled
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 5)


def test_local_weights_are_loaded_and_head_replaced(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    net = resnet18_net(3, 2, "imagenet", weights_path=str(path))
    assert torch.equal(net.conv1.weight, ref.conv1.weight) and torch.equal(net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert net.fc.out_features == 2
    with pytest.raises(ValueError, match="stem"):
        resnet18_net(3, 2, "huge")
