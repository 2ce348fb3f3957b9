# The reference document's shared-memory example, as it is there, but for
# the import: liteyuki.comm.storage is gi.repository.Ly.
import gi; gi.require_version('Ly', '1')  # noqa: E702
from gi.repository.Ly import shared_memory
shared_memory.set("key", "value") # 设置共享内存
value = shared_memory.get("key") # 获取共享内存
